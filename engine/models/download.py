"""Getting an entry's file into the cache: download (resumable, verified) or import a local copy.

Rules every path here keeps:
- the file only appears under its final name after its size and sha256 were checked; until then it
  lives under a ``.part`` name (resumed with an HTTP Range request next time);
- a checksum mismatch deletes the partial file and names both checksums;
- a failure names the URL and the manual alternatives (``models import``, the offline folder).

Hub-hosted files go through ``huggingface_hub`` (its own resume and cache); the hub's LFS sha256 is
the published checksum for them when the registry records none. Plain-URL files (SAM, the SkyScript
zips, the upsampler checkpoints) use ``urllib`` with Range resume, since no library is built for them.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from engine.errors import Cancelled, UserError
from engine.models import cache
from engine.models.registry import Source, WeightEntry

NO_NETWORK_ENV = "RS_OVSEG_NO_DOWNLOAD"  # "1": never touch the network (air-gapped installs)
CHUNK_BYTES = 1024 * 1024
TIMEOUT_S = 60
USER_AGENT = "rs-ovseg-engine"


def manual_help(entry: WeightEntry, source: Source | None = None) -> str:
    """What a user can do when a download is impossible."""
    sources = [source] if source else list(entry.sources)
    where = "; or ".join(f"{s.location} (saved as {s.filename})" for s in sources)
    return (
        f"Get {where} by other means, then either run `python -m engine models import {entry.name} FILE` "
        f"or copy the file into an offline folder named by {cache.OFFLINE_ENV} (or --offline-dir)."
    )


def _emit(progress, **event) -> None:
    if progress is not None:
        progress(event)


TOKEN_ENV = "HF_TOKEN"  # the hub's standard variable for an access token


def hub_token(token: str | None = None) -> str | None:
    """The hub access token: the given one, else ``HF_TOKEN``, else None (huggingface_hub then uses a
    saved ``hf auth login``, if any)."""
    return token or os.environ.get(TOKEN_ENV) or None


def _refused_access(error: BaseException) -> bool:
    """Whether a hub error is the server refusing this account (401 no/invalid token, 403 no access)."""
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None) in (401, 403) or type(error).__name__ == "GatedRepoError"


def gated_help(entry: WeightEntry) -> str:
    """How to get access to a gated entry's files."""
    page = entry.access or entry.sources[0].location
    return (
        f"{entry.name} is gated: the hub gives it only to accounts that accepted its licence "
        f"({entry.licence}). 1) Sign in at {page} and request access (the form accepts the licence). "
        f"2) Create a read token at https://huggingface.co/settings/tokens. 3) Set {TOKEN_ENV}=<token> "
        "or pass --token, and download again."
    )


def _published_hub_sha256(source: Source, token: str | None = None) -> str | None:
    """The hub's LFS sha256 of a hub file (its ETag), or None if the hub does not give one."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(source.hub.repo, source.hub.file, revision=source.hub.revision)
    etag = (get_hf_file_metadata(url, token=token).etag or "").strip('"')
    return etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else None


def _tqdm_for(progress, entry_name: str, url: str):
    """A tqdm subclass that also reports to ``progress`` (huggingface_hub takes a tqdm class)."""
    from tqdm.auto import tqdm

    class _Reporting(tqdm):
        def update(self, n=1):
            result = super().update(n)
            _emit(
                progress,
                stage="download",
                name=entry_name,
                url=url,
                bytes_done=int(self.n),
                bytes_total=int(self.total or 0),
            )
            return result

    return _Reporting


def _download_hub(
    entry: WeightEntry, source: Source, target: Path, progress, token: str | None = None
) -> str:
    from huggingface_hub import hf_hub_download

    token = hub_token(token)
    try:
        published = source.sha256 or _published_hub_sha256(source, token)
        staging = target.parent / ".hub"
        fetched = Path(
            hf_hub_download(
                source.hub.repo,
                source.hub.file,
                revision=source.hub.revision,
                local_dir=staging,
                tqdm_class=_tqdm_for(progress, entry.name, source.location),
                token=token,
            )
        )
    except Exception as error:
        if entry.gated and _refused_access(error):
            status = getattr(getattr(error, "response", None), "status_code", "refused")
            which = "no token was given" if token is None else "the token has no access to it"
            raise UserError(
                f"the hub refused {source.location} ({status}: {which}). {gated_help(entry)}"
            ) from None
        raise
    partial = target.with_name(target.name + ".part")
    os.replace(fetched, partial)
    return _verify_and_place(entry, source, partial, target, published, progress)


def _http_download(url: str, partial: Path, *, name: str, progress) -> None:
    """Fetch ``url`` into ``partial``, resuming from its current length with a Range request."""
    done = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and done:  # nothing left to fetch: the part file is already complete
            return
        raise
    with response:
        resumed = response.status == 206
        if not resumed:
            done = 0  # the server ignored Range: start over
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else 0
        with open(partial, "ab" if resumed else "wb") as handle:
            while chunk := response.read(CHUNK_BYTES):
                handle.write(chunk)
                done += len(chunk)
                _emit(progress, stage="download", name=name, url=url, bytes_done=done, bytes_total=total)
    if total and done != total:
        raise OSError(f"connection closed after {done} of {total} bytes")


def _verify_and_place(entry, source, partial: Path, target: Path, published: str | None, progress) -> str:
    """Check ``partial`` against the published size/sha256, then rename it to ``target``."""
    size = partial.stat().st_size
    if source.size is not None and size != source.size and not source.archive_member:
        partial.unlink()
        raise UserError(
            f"download of {entry.name} from {source.location} has {size} bytes, the published file has "
            f"{source.size}; the partial file was deleted. Try again. {manual_help(entry, source)}"
        )
    actual = cache.sha256_of(partial, progress)
    if published is not None and actual != published:
        partial.unlink()
        raise UserError(
            f"download of {entry.name} from {source.location} is corrupt: its sha256 is {actual}, the "
            f"published sha256 is {published}; the file was deleted. Try again. {manual_help(entry, source)}"
        )
    os.replace(partial, target)
    cache.remember_sha256(target, actual)
    return actual


def _extract_member(entry: WeightEntry, source: Source, archive_path: Path, target: Path, progress) -> str:
    """Copy the zip member named ``source.archive_member`` to ``target`` (via a .part file)."""
    with zipfile.ZipFile(archive_path) as archive:
        members = [m for m in archive.infolist() if Path(m.filename).name == source.archive_member]
        if len(members) != 1:
            raise UserError(
                f"{archive_path} holds {len(members)} files named {source.archive_member}, expected one. "
                f"{manual_help(entry, source)}"
            )
        partial = target.with_name(target.name + ".part")
        # Output goes to our own file name: member paths are never used as paths (no zip-slip).
        with archive.open(members[0]) as reader, open(partial, "wb") as writer:
            shutil.copyfileobj(reader, writer, CHUNK_BYTES)
    return _verify_and_place(entry, source, partial, target, source.sha256, progress)


def _download_url(entry: WeightEntry, source: Source, target: Path, progress) -> str:
    if source.archive_member:
        archive = target.with_name(Path(source.url).name)
        partial = archive.with_name(archive.name + ".part")
        _http_download(source.url, partial, name=entry.name, progress=progress)
        os.replace(partial, archive)
        try:
            return _extract_member(entry, source, archive, target, progress)
        finally:
            archive.unlink(missing_ok=True)
    partial = target.with_name(target.name + ".part")
    _http_download(source.url, partial, name=entry.name, progress=progress)
    return _verify_and_place(entry, source, partial, target, source.sha256, progress)


def download(
    entry: WeightEntry, *, progress=None, offline_dir=None, force: bool = False, token: str | None = None
) -> cache.LocatedFile:
    """The entry's verified file: found in the cache/offline folders, else downloaded into the cache.

    Sources are tried in registry order. UserError if every source fails, naming each URL and the
    manual alternatives.
    """
    if not force:
        found = cache.find_weights(entry, offline_dir, progress)
        if found is not None:
            return found
    if os.environ.get(NO_NETWORK_ENV) == "1":
        raise UserError(
            f"weights {entry.name} are not in the cache ({cache.entry_dir(entry)}) nor an offline folder, "
            f"and downloads are disabled ({NO_NETWORK_ENV}=1). {manual_help(entry)}"
        )
    failures = []
    for source in entry.sources:
        target = cache.entry_dir(entry) / source.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        _emit(progress, stage="start", name=entry.name, url=source.location)
        try:
            if source.hub:
                digest = _download_hub(entry, source, target, progress, token)
            else:
                digest = _download_url(entry, source, target, progress)
        except (UserError, Cancelled):
            raise
        except Exception as error:  # network errors come in many types (urllib, ssl, hub, OS)
            failures.append(f"{source.location}: {type(error).__name__}: {error}")
            continue
        _emit(progress, stage="done", name=entry.name, file=str(target))
        return cache.LocatedFile(target, source, digest, "cache")
    raise UserError(
        f"could not download weights {entry.name}. Tried: " + " | ".join(failures) + ". " + manual_help(entry)
    )


def import_file(entry: WeightEntry, file: str | Path, *, progress=None) -> cache.LocatedFile:
    """Verify a file obtained elsewhere against the entry's sources and copy it into the cache.

    The file must match a source's published size and sha256 (when published) and hold weights of
    the entry's kind and architecture; otherwise nothing is placed and a UserError says why (with
    both checksums when they differ).
    """
    from engine.models.checkpoints import read_checkpoint

    file = Path(file)
    if not file.is_file():
        raise UserError(f"file to import not found: {file}")
    actual = cache.sha256_of(file, progress)
    size = file.stat().st_size
    with_sha = [s for s in entry.sources if s.sha256]
    matching = [s for s in with_sha if s.sha256 == actual]
    if with_sha and not matching:
        published = " or ".join(dict.fromkeys(s.sha256 for s in with_sha))
        raise UserError(
            f"{file} is not the published {entry.name} file: its sha256 is {actual}, the published "
            f"sha256 is {published}. Nothing was imported."
        )
    source = matching[0] if matching else entry.sources[0]
    if source.size is not None and size != source.size:
        raise UserError(
            f"{file} has {size} bytes, the published {entry.name} file has {source.size}. "
            "Nothing was imported."
        )
    checkpoint = read_checkpoint(file)
    if checkpoint.kind != entry.kind or (
        checkpoint.architecture and checkpoint.architecture != entry.architecture
    ):
        raise UserError(
            f"{file} holds {checkpoint.kind or 'unknown'} weights of architecture "
            f"{checkpoint.architecture or 'unknown'} ({checkpoint.format}), but {entry.name} is "
            f"{entry.kind} {entry.architecture}. Nothing was imported."
        )
    target = cache.entry_dir(entry) / source.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    shutil.copyfile(file, partial)
    os.replace(partial, target)
    cache.remember_sha256(target, actual)
    return cache.LocatedFile(target, source, actual, "cache")
