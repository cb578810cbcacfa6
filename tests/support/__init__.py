"""Test support, imported by the tests and the benchmarks, never by the product.

- `fake_openai`: a real OpenAI-compatible HTTP server on loopback, scripted by a responder
  (in-process or `python -m tests.support.fake_openai`).
- `scripts`: scripted model behaviour per role (`(role, prompt) -> reply`), and its HTTP
  responders for the fake server.
- `judges`: scripted judges of known behaviour and labelled pairs to check them on.
- `chat_models`: `ScriptedChatModel`, an in-process LangChain chat model over a script.
- `eval_world`: `ScriptedWorld` (a script over eval items with known right answers) and
  `no_network`, a guard that refuses connections outside loopback.
- `processes`: the fake server in a process of its own, and waiting on what a process writes.
"""
