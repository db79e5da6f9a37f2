"""Downloads over a loopback HTTP server (with Range support), imports, the registry and the CLI."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch

from engine.cli import main
from engine.errors import UserError
from engine.models import cache, registry
from engine.models.download import download
from engine.models.registry import Source, WeightEntry

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FEATUP = SHARED_DATA / "featup_jbu_stack_clip_vitb16_cocostuff.ckpt"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RS_OVSEG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RS_OVSEG_OFFLINE_DIR", raising=False)
    monkeypatch.delenv("RS_OVSEG_NO_DOWNLOAD", raising=False)


class _Server:
    """Serves ``payload`` at /file; can cut the first response half-way; records Range headers."""

    def __init__(self, payload: bytes, cut_first: bool = False):
        self.payload, self.cut_first, self.ranges = payload, cut_first, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = int(header.split("=")[1].rstrip("-")) if header else 0
                body = server.payload[start:]
                self.send_response(206 if header else 200)
                self.send_header("Content-Length", str(len(body)))
                if header:
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}"
                    )
                self.end_headers()
                if server.cut_first and len(server.ranges) == 1:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _entry(url: str, payload: bytes, sha256: str | None = None) -> WeightEntry:
    source = Source(
        filename="weights.pth",
        format="sam-state-dict",
        url=url,
        sha256=sha256 or hashlib.sha256(payload).hexdigest(),
        size=len(payload),
    )
    return WeightEntry("test-weights", "sam", "tiny", "test", "none", (source,))


def test_interrupted_download_resumes_with_range(tmp_path):
    payload = bytes(range(256)) * 4000
    with _Server(payload, cut_first=True) as server:
        entry = _entry(server.url, payload)
        final = cache.entry_dir(entry) / "weights.pth"
        with pytest.raises(UserError) as error:
            download(entry)
        assert server.url in str(error.value) and "models import test-weights" in str(error.value)
        partial = final.with_name("weights.pth.part")
        assert not final.exists() and 0 < partial.stat().st_size < len(payload)
        half = partial.stat().st_size
        events = []
        located = download(entry, progress=events.append)
    assert server.ranges == [None, f"bytes={half}-"]
    assert final.read_bytes() == payload and not partial.exists()
    assert located.sha256 == hashlib.sha256(payload).hexdigest()
    assert events[-1]["stage"] == "done"
    assert any(e.get("bytes_done") == len(payload) and e.get("bytes_total") == len(payload) for e in events)
    # Found in the cache next time: no request.
    with _Server(payload) as server:
        assert download(_entry(server.url, payload)).path == final
        assert server.ranges == []


def test_corrupted_download_is_rejected_and_leaves_no_file(tmp_path):
    payload = b"x" * 50_000
    published = hashlib.sha256(b"y" * 50_000).hexdigest()
    with _Server(payload) as server:
        entry = _entry(server.url, payload, sha256=published)
        with pytest.raises(UserError) as error:
            download(entry)
    message = str(error.value)
    assert published in message and hashlib.sha256(payload).hexdigest() in message
    folder = cache.entry_dir(entry)
    assert not (folder / "weights.pth").exists() and not (folder / "weights.pth.part").exists()


def test_downloads_can_be_disabled(monkeypatch):
    monkeypatch.setenv("RS_OVSEG_NO_DOWNLOAD", "1")
    with pytest.raises(UserError, match="downloads are disabled"):
        download(registry.get_entry("sam-vit-b"))


def test_cache_folder_follows_rs_ovseg_home(tmp_path):
    assert cache.cache_dir() == tmp_path / "home" / "weights"


def test_offline_folder_file_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    offline = tmp_path / "offline"
    (offline / "featup-jbu-stack-vit-b-16").mkdir(parents=True)
    (offline / "featup-jbu-stack-vit-b-16" / "clip_jbu_stack_cocostuff.ckpt").write_bytes(b"0" * 3513883)
    monkeypatch.setenv("RS_OVSEG_OFFLINE_DIR", str(offline))
    with pytest.raises(UserError, match="38ce7487c648d01cf37beb005f464410c498008fea03e6a68a269d79e4e29622"):
        cache.find_weights(registry.get_entry("featup-jbu-stack-vit-b-16"))


def test_registry_holds_the_required_weights():
    names = {e.name for e in registry.all_entries()}
    required = {
        "openai-vit-b-16",
        "openai-vit-l-14",
        "remoteclip-vit-b-32",
        "remoteclip-vit-l-14",
        "georsclip-vit-b-32",
        "georsclip-vit-l-14",
        "skyclip-vit-b-32",
        "skyclip-vit-l-14",
        "sam-vit-b",
        "sam-vit-l",
        "sam-vit-h",
        "simfeatup-jbu-one-vit-b-16",
        "featup-jbu-stack-vit-b-16",
    }
    assert required <= names
    assert not registry.get_entry("georsclip-vit-l-14").strict
    sam_h = registry.get_entry("sam-vit-h").sources[0]
    assert sam_h.sha256 == "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"
    # OpenAI's URL embeds its file's sha256 (as open_clip relies on): the registry agrees with open_clip.
    from open_clip.pretrained import get_pretrained_url

    for name in ("openai-vit-b-16", "openai-vit-l-14"):
        entry = registry.get_entry(name)
        url_source = next(s for s in entry.sources if s.url)
        assert url_source.url == get_pretrained_url(entry.open_clip["architecture"], entry.open_clip["tag"])
        assert url_source.url.split("/")[-2] == url_source.sha256


@pytest.mark.skipif(not FEATUP.is_file(), reason="shared test data absent")
def test_import_verifies_and_places(tmp_path, capsys):
    wrong = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": {"upsampler.fixup_proj.1.weight": torch.zeros(2, 2, 1, 1)}}, wrong)
    assert main(["models", "import", "featup-jbu-stack-vit-b-16", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert hashlib.sha256(wrong.read_bytes()).hexdigest() in err
    assert "38ce7487c648d01cf37beb005f464410c498008fea03e6a68a269d79e4e29622" in err
    target = cache.entry_dir(registry.get_entry("featup-jbu-stack-vit-b-16"))
    assert not target.exists() or not any(target.iterdir())

    assert main(["models", "import", "featup-jbu-stack-vit-b-16", str(FEATUP)]) == 0
    assert (target / "clip_jbu_stack_cocostuff.ckpt").read_bytes() == FEATUP.read_bytes()
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["featup-jbu-stack-vit-b-16"]["present"] == "cache"
    assert rows["sam-vit-h"]["present"] == "no"


def test_models_list_shows_name_kind_size_licence_presence(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("sam-vit-b "))
    assert "sam" in line and "375.0 MB" in line and "Apache-2.0" in line and " no " in line


@pytest.mark.skipif(not FEATUP.is_file(), reason="shared test data absent")
def test_models_check_identifies_format_and_architecture(capsys):
    assert main(["models", "check", str(FEATUP), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "lightning-upsampler" and summary["architecture"] == "jbu_stack"
    assert summary["details"]["dim"] == 512 and summary["tensors"] == 42


def test_zip_release_is_downloaded_and_its_member_extracted(tmp_path):
    import io
    import zipfile

    member = b"checkpoint-bytes" * 1000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("SkyCLIP_ViT_B32_top50pct/epoch_20.pt", member)
        archive.writestr("SkyCLIP_ViT_B32_top50pct/params.txt", b"lr=1e-9")
    with _Server(buffer.getvalue()) as server:
        source = Source(
            filename="sky.pt",
            format="openclip-training-checkpoint",
            url=server.url,
            archive_member="epoch_20.pt",
        )
        entry = WeightEntry("sky-test", "clip", "ViT-B-32", "test", "none", (source,))
        located = download(entry)
    assert located.path.read_bytes() == member
    assert sorted(p.name for p in located.path.parent.iterdir()) == ["sky.pt"]
