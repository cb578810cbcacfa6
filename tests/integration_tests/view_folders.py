"""Output folders for the viewer's tests: one written by a real `curate` run against the fake
OpenAI server (hostile text, a chat row, an alternate-refiner win, a judge that writes
garbage, a model failure, a bad input row), and a large synthetic one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nodes.state import Answer, ChainState, Decision, JudgeCall, Verdict
from refine_n_judge import cli
from refine_n_judge.curate.records import DpoRow, SftRow
from tests.support.fake_openai import ChatRequest, FakeOpenAIServer, Reply
from tests.support.scripts import judge_json, refine_json, role_of, tag, version

SCRIPT = "<script>alert('pwned')</script>"
HOSTILE_ANSWER = f"v0 {SCRIPT} & <b>bold</b>"
GARBLED_JUDGE = "I refuse <img src=x onerror=alert(2)> to give JSON"
ROWS = [
    {"id": "hostile", "question": "What is <i>v</i>?", "answer": HOSTILE_ANSWER},
    {"id": "alt", "question": "Alternate please: what is v?", "answer": "v0"},
    {"id": "fail", "question": "Fail on refine", "answer": "v0"},
    {"id": "garbled", "question": "Garbled judge", "answer": "v0"},
    {
        "id": "chat",
        "messages": [
            {"role": "user", "content": "earlier turn"},
            {"role": "assistant", "content": "earlier reply"},
            {"role": "user", "content": "chat v?"},
            {"role": "assistant", "content": "v0"},
        ],
    },
]
BAD_LINE = '{"id": "bad", "question": 5}'
STOP_AT = 2


def responder(request: ChatRequest) -> Reply:
    """Chains grow v0 -> v2 (the judge prefers the higher version up to v2); the alternate
    refiner wins once on the "Alternate" item; refine fails on "Fail"; the judge writes no
    JSON on "Garbled"."""
    prompt = request.texts("user")[0]
    role = role_of(prompt)
    question = tag(prompt, "question")
    if role == "feedback":
        return Reply(content=f"Improve {tag(prompt, 'answer')} & keep <tags>.")
    if role == "refine":
        if question.startswith("Fail"):
            return Reply(status=500, error_message="refiner down")
        old = version(tag(prompt, "answer"))
        if request.model == "fake-alt" and question.startswith("Alternate"):
            return Reply(content=refine_json(f"v{old + 1} alt", "The alternate's try."))
        return Reply(content=refine_json(f"v{old + 1} is better", "Raised the version."))
    if role == "judge":
        if question.startswith("Garbled"):
            return Reply(content=GARBLED_JUDGE)
        a, b = tag(prompt, "answer_A"), tag(prompt, "answer_B")
        if "alt" in a + b and question.startswith("Alternate"):
            best = a if a.endswith("alt") else b
        else:
            va, vb = version(a), version(b)
            top = max(va, vb) if max(va, vb) <= STOP_AT else min(va, vb)
            best = a if va == top else b
        return Reply(content=judge_json("A" if best == a else "B", why=f"Prefer <{best}>"))
    raise ValueError(f"no scripted reply for {role}")


def curated_folder(root: Path) -> Path:
    """A folder written by `refine-n-judge curate` over ROWS and BAD_LINE."""
    data = root / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + BAD_LINE + "\n")
    out = root / "out"
    with FakeOpenAIServer(responder) as server:
        code = cli.main(
            ["curate", str(data), "--out", str(out), "--refiner", "fake",
             "--alternate-refiner", "fake-alt", "--base-url", server.base_url,
             "--max-attempts", "1", "--concurrency", "2", "--quiet"]
        )  # fmt: skip
    assert code == 1, "the bad row and the failing item make the run exit 1"
    return out


def chain_row_with_conversation() -> dict[str, Any]:
    """A chains.jsonl row whose item came from a chat: its earlier turns under `messages`."""
    state = synthetic_state(1).model_dump(mode="json")
    return state | {
        "id": "chat-1",
        "question": "now?",
        "messages": [
            {"role": "user", "content": "earlier <turn>"},
            {"role": "assistant", "content": "earlier reply"},
        ],
    }


def synthetic_state(n: int) -> ChainState:
    """Item n of a large folder: chain length n % 4, every 7th accepted by the alternate."""
    chain = [Answer(text=f"answer {n} v0", iteration=0, model="input", role="initial")]
    judgments, decisions = [], []
    for i in range(1, n % 4 + 1):
        role = "alternate_refiner" if n % 7 == 0 and i == n % 4 else "refiner"
        chain.append(
            Answer(text=f"answer {n} v{i}", iteration=i, model="m", role=role,
                   explanation="better", feedback="improve")
        )  # fmt: skip
        for position in ("refined_first", "refined_second"):
            judgments.append(
                JudgeCall(iteration=i, judge_model="m", position=position,
                          candidate_role=role, winner="refined", justification="ok")
            )  # fmt: skip
        decisions.append(
            Decision(iteration=i, candidate_role=role, candidate_model="m",
                     verdicts=[Verdict(judge_model="m", outcome="refined")], answered=1,
                     votes_for_refined=1, quorum=1, accepted=True, outcome="refined")
        )  # fmt: skip
    return ChainState(
        id=f"item-{n:06d}",
        question=f"Question number {n}: what is {n} squared?",
        answer=chain[0].text,
        chain=chain,
        judgments=judgments,
        decisions=decisions,
        iteration=len(chain),
        stop_reason="max_iterations" if n % 2 else "rejected",
    )


def synthetic_folder(out: Path, items: int) -> Path:
    """`items` chains with their SFT and DPO rows, written as curate writes them."""
    out.mkdir(parents=True)
    with (
        open(out / "chains.jsonl", "w") as chains,
        open(out / "sft.jsonl", "w") as sft,
        open(out / "dpo.jsonl", "w") as dpo,
    ):
        for n in range(items):
            state = synthetic_state(n)
            final = state.chain[-1]
            chains.write(state.to_json_line() + "\n")
            sft.write(SftRow(id=state.id, prompt=state.question,
                             completion=final.text).model_dump_json() + "\n")  # fmt: skip
            for before, after in zip(state.chain, state.chain[1:], strict=False):
                dpo.write(
                    DpoRow(id=state.id, prompt=state.question, chosen=after.text,
                           rejected=before.text, chosen_iteration=after.iteration,
                           rejected_iteration=before.iteration,
                           pair="accepted_step", outcome="refined").model_dump_json() + "\n"
                )  # fmt: skip
    return out
