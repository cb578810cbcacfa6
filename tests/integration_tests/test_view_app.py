"""`refine-n-judge view` over HTTP: Starlette's test client on a folder written by a real
`curate` run against the fake OpenAI server, on a 20,000-item folder, and the command
itself serving on a free loopback port."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from refine_n_judge import cli
from refine_n_judge.view.app import create_app
from tests.integration_tests.view_folders import (
    GARBLED_JUDGE,
    SCRIPT,
    chain_row_with_conversation,
    curated_folder,
    synthetic_folder,
    synthetic_state,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as env:  # conftest's offline guard is per test
        for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "OPENAI_API_KEY"):
            env.delenv(name, raising=False)
        yield curated_folder(tmp_path_factory.mktemp("view"))


@pytest.fixture(scope="module")
def client(folder: Path) -> TestClient:
    return TestClient(create_app(folder), base_url="http://127.0.0.1")


def item_ids(html: str) -> list[str]:
    return re.findall(r'<td><a href="/item\?id=[^"]*">([^<]*)</a></td>', html)


def stat(html: str, label: str) -> str:
    match = re.search(rf"<b>([^<]*)</b><span>{re.escape(label)}", html)
    assert match, f"no {label!r} figure"
    return match.group(1)


def test_run_page_shows_the_numbers_and_plots(client: TestClient, folder: Path) -> None:
    report = json.loads((folder / "run.json").read_text())
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    assert stat(html, "items") == str(report["counts"]["items"]) == "6"
    assert stat(html, "succeeded") == str(report["counts"]["succeeded"])
    assert stat(html, "failed") == str(report["counts"]["failed"])
    assert stat(html, "model calls") == f"{report['total_calls']:,}"
    assert stat(html, "cost") == "unknown"  # the fake models have no price
    assert "judge swap consistency" in html
    assert html.count("<svg") >= 4  # stop reasons, chain lengths, failures, tokens
    for reason in report["stop_reasons"]:
        assert f'href="/items?stop={reason}"' in html
    assert 'href="/items?length=2&amp;status=ok"' in html
    assert "script-src" not in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_item_page_escapes_model_and_input_text(client: TestClient) -> None:
    html = client.get("/item", params={"id": "hostile"}).text
    assert SCRIPT not in html and "<b>bold</b>" not in html and "<i>v</i>" not in html
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html
    assert "What is &lt;i&gt;v&lt;/i&gt;?" in html
    assert "Prefer &lt;v1 is better&gt;" in html  # a judge's justification
    assert "Improve v1 is better &amp; keep &lt;tags&gt;." in html  # feedback


def test_item_page_shows_answers_diffs_judge_calls_and_pairs(client: TestClient) -> None:
    html = client.get("/item", params={"id": "hostile"}).text
    assert len(re.findall(r'<section class="card answer" id="answer-\d+">', html)) == 3
    assert "<del>v0</del><ins>v1</ins>" in html  # Ans1 against Ans0
    assert "<del>&amp; &lt;b&gt;bold&lt;/b&gt;</del><ins>better</ins>" in html
    assert "<del>v1</del><ins>v2</ins> is better" in html  # Ans2 against Ans1
    assert "The alternate" not in html and "Raised the version." in html  # explanations
    rounds = re.findall(r'<section class="card round" id="round-\d+">', html)
    assert len(rounds) == 4  # v1, v2 accepted; v3 rejected, then the alternate's v3 rejected
    assert html.count('<tr class="call">') == 8  # two swapped calls per round
    assert "refined_first" in html and "refined_second" in html
    assert 'id="rejected"' in html and "stop: rejected" in html
    assert html.count('<section class="card dpo">') == 3
    assert "final_over_rejected" in html and html.count("accepted_step") == 2


def test_alternate_refiner_item(client: TestClient) -> None:
    listing = client.get("/items", params={"alt": "1"}).text
    assert item_ids(listing) == ["alt"]
    html = client.get("/item", params={"id": "alt"}).text
    assert "alternate refiner accepted" in html
    assert "v3 alt" in html and "The alternate&#39;s try." in html


def test_judge_raw_reply_is_shown_escaped(client: TestClient) -> None:
    html = client.get("/item", params={"id": "garbled"}).text
    assert GARBLED_JUDGE not in html
    assert "I refuse &lt;img src=x onerror=alert(2)&gt; to give JSON" in html


def test_failure_rows(client: TestClient) -> None:
    html = client.get("/item", params={"id": "fail"}).text
    assert '<section class="card" id="failure">' in html
    assert "<th>stage</th><td>refine</td>" in html and "<th>kind</th><td>model_error</td>" in html
    assert "refiner down" in html
    assert 'id="answer-0"' in html  # the partial chain as far as it got
    bad = client.get("/item", params={"id": "in.jsonl:6"}).text
    assert "<th>kind</th><td>wrong_type</td>" in bad and "<th>field</th><td>question</td>" in bad
    assert "&#34;question&#34;: 5" in bad  # the raw row


def test_item_list_filters(client: TestClient) -> None:
    everything = item_ids(client.get("/items").text)
    # chains.jsonl's rows first (in the order they finished), then failures.jsonl's
    assert sorted(everything[:3]) == ["alt", "chat", "hostile"]
    assert sorted(everything[3:]) == ["fail", "garbled", "in.jsonl:6"]
    failed = item_ids(client.get("/items?status=failed").text)
    assert sorted(failed) == ["fail", "garbled", "in.jsonl:6"]
    assert sorted(item_ids(client.get("/items?stop=rejected").text)) == ["chat", "hostile"]
    assert sorted(item_ids(client.get("/items?length=2").text)) == ["chat", "hostile"]
    assert item_ids(client.get("/items?length=3&status=ok&alt=1").text) == ["alt"]
    assert item_ids(client.get("/items?q=CHAT+v").text) == ["chat"]
    assert item_ids(client.get("/items?q=%3Ci%3E").text) == ["hostile"]  # "<i>"


def test_chat_item_shows_its_conversation(client: TestClient) -> None:
    html = client.get("/item", params={"id": "chat"}).text
    conversation = html[html.index('id="conversation"') : html.index('id="question"')]
    assert conversation.index("earlier turn") < conversation.index("earlier reply")
    assert "chat v?" in html[html.index('id="question"') :]
    # its DPO prompts and SFT row are conversations too, shown turn by turn
    assert html.count("<summary>prompt (a conversation)</summary>") == html.count(
        'class="card dpo"'
    )
    assert '<div class="label">assistant</div><div class="text">v2 is better</div>' in html


def test_conversation_under_another_field_name(tmp_path: Path) -> None:
    (tmp_path / "chains.jsonl").write_text(json.dumps(chain_row_with_conversation()) + "\n")
    client = TestClient(create_app(tmp_path), base_url="http://127.0.0.1")
    html = client.get("/item", params={"id": "chat-1"}).text
    assert '<div class="card" id="conversation">' in html
    assert html.index("earlier &lt;turn&gt;") < html.index("earlier reply") < html.index("now?")


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/items?page=x", 400, "page must be a whole number, not &#39;x&#39;"),
        ("/items?page=0", 400, "page must be at least 1"),
        ("/items?status=gone", 400, "status must be all, ok or failed"),
        ("/items?length=-1", 400, "length must be at least 0"),
        ("/items?per=100000", 400, "per (items per page) must be at most 500"),
        ("/item", 400, "id is missing"),
        ("/item?id=%3Cscript%3E", 404, "no item has the id &#39;&lt;script&gt;&#39;"),
        ("/item?id=../run.json", 404, "no item has the id"),
    ],
)
def test_bad_requests_get_a_clear_message(
    client: TestClient, url: str, status: int, message: str
) -> None:
    response = client.get(url)
    assert response.status_code == status
    assert message in response.text


def test_nothing_outside_the_pages_is_served(client: TestClient) -> None:
    for path in ("/run.json", "/chains.jsonl", "/../run.json", "/static/x", "/item/x"):
        assert client.get(path).status_code == 404, path
    assert client.post("/").status_code == 405
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"host": "localhost:9"}).status_code == 200


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_folder(tmp_path_factory.mktemp("view-big") / "out", 20_000)


def wait_until_indexed(app: Starlette) -> None:
    deadline = time.monotonic() + 300
    while not app.state.index.progress().done:
        assert time.monotonic() < deadline, "the background index never caught up"
        time.sleep(0.05)


def test_20000_items_first_and_last_page(big_folder: Path) -> None:
    app = create_app(big_folder)
    with TestClient(app, base_url="http://127.0.0.1") as client:  # runs the background index
        first = client.get("/items").text
        assert item_ids(first) == [f"item-{n:06d}" for n in range(50)]
        wait_until_indexed(app)
        first = client.get("/items").text
        assert item_ids(first) == [f"item-{n:06d}" for n in range(50)]
        assert "20,000 of 20,000" in first and "page 1 of 400" in first
        assert 'href="/items?page=400" id="last"' in first and 'id="indexing"' not in first
        last = client.get("/items?page=400").text
        assert item_ids(last) == [f"item-{n:06d}" for n in range(19_950, 20_000)]
        assert "page 400 of 400" in last and 'id="next"' not in last
        alt_last = client.get("/items?alt=1&page=1000").text  # past the end: the last page
        assert item_ids(alt_last)[-1] == "item-019999"  # 7 * 2857, with 3 refinements
        item = client.get("/item", params={"id": "item-019999"}).text
        assert "Question number 19999" in item and item.count('<section class="card dpo">') == 3
        run = client.get("/").text
        assert stat(run, "items") == "20,000" and stat(run, "succeeded") == "20,000"


def test_a_large_folder_answers_before_it_is_all_read(big_folder: Path) -> None:
    client = TestClient(create_app(big_folder), base_url="http://127.0.0.1")  # no background
    first = client.get("/items").text
    assert item_ids(first) == [f"item-{n:06d}" for n in range(50)]
    assert 'id="indexing"' in first and "Reading the folder" in first
    read_first = int(re.search(r'id="matched">([\d,]+) of', first).group(1).replace(",", ""))
    assert 50 <= read_first < 20_000
    again = client.get("/items").text  # each request reads one more step
    read_again = int(re.search(r'id="matched">([\d,]+) of', again).group(1).replace(",", ""))
    assert read_first < read_again


def test_view_command_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["view", str(tmp_path / "missing")]) == cli.EXIT_SETTINGS
    assert "missing is not a folder" in capsys.readouterr().err
    assert cli.main(["view", str(tmp_path), "--port", "70000"]) == cli.EXIT_SETTINGS
    assert "--port must be between 0 and 65535" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["view", str(tmp_path), "--port", str(port)]) == cli.EXIT_SETTINGS
    assert f"port {port} on 127.0.0.1 is taken" in capsys.readouterr().err


def test_view_command_serves_on_a_free_loopback_port(folder: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "refine_n_judge.cli", "view", str(folder)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"on (http://127\.0\.0\.1:(\d+)/) ", first)
        assert match, first
        response = httpx.get(match.group(1) + "items", timeout=30)
        assert response.status_code == 200 and "hostile" in response.text
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_pages_follow_a_run_still_writing(tmp_path: Path) -> None:
    out = synthetic_folder(tmp_path / "growing", 3)
    client = TestClient(create_app(out), base_url="http://127.0.0.1")
    assert item_ids(client.get("/items").text) == ["item-000000", "item-000001", "item-000002"]
    row = synthetic_state(3).to_json_line() + "\n"
    with open(out / "chains.jsonl", "a") as chains:
        chains.write(row[:50])  # a write still in flight
        chains.flush()
        assert len(item_ids(client.get("/items").text)) == 3
        chains.write(row[50:])
    assert item_ids(client.get("/items").text)[-1] == "item-000003"
    assert stat(client.get("/").text, "items") == "4"
