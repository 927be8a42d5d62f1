"""A real HTTP server speaking the GDC API shapes (/files pages, /data with Range) with injectable faults.

Used by the tests as a context manager, and standalone for a Snakemake run of the TCGA config:

    python tests/gdc_server.py --port 8765 --root DIR [--manifest gdc_manifest.txt] [--project TCGA-BRCA]

serves every file in DIR (file id = uuid5 of its name) plus, metadata only, the rows of a GDC manifest.
Plain URLs (`add_url`) serve files outside the API, e.g. a cBioPortal-datahub-like `.tar.gz` (`tar_archive`),
with the same fault knobs and Range support as /data but no token check (a public file host).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import socket
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIELD_ALIASES = {
    "cases.project.project_id": "project",
    "cases.submitter_id": "submitter_id",
    "md5sum": "md5",
    "file_size": "size",
}


@dataclass
class ServedFile:
    """One file the fake GDC knows; `content` None means metadata only. Fault knobs count down per request."""

    file_id: str
    file_name: str
    content: bytes | None
    md5: str | None = None  # the md5 the API reports; defaults to the content's real md5
    state: str = "released"
    submitter_id: str = ""
    project: str = "TCGA-BRCA"
    data_type: str = "Slide Image"
    experimental_strategy: str = "Diagnostic Slide"
    data_format: str = "SVS"
    fail_first: int = 0  # answer this many /data requests with `fail_status` before serving
    fail_status: int = 503  # the status of those failures (503 transient, 501 permanent, ...)
    retry_after: str | None = None  # Retry-After header sent with the failures
    redirect_to: str | None = None  # answer /data with 302 to this base URL + /data/{id} (another host)
    send_chunk: int | None = None  # serve the body in pieces of this many bytes ...
    send_delay_s: float = 0.0  # ... with this pause after each (a slow server, for kill-mid-file tests)
    cut_after: int | None = None  # send headers and this many body bytes, then drop the connection
    cut_times: int = 1  # how many responses are cut
    ignore_range: bool = False  # answer Range requests with the whole file (200)

    def __post_init__(self) -> None:
        if self.md5 is None and self.content is not None:
            self.md5 = hashlib.md5(self.content).hexdigest()

    @property
    def size(self) -> int | None:
        return None if self.content is None else len(self.content)

    def value(self, name: str):
        """Field value for filters and hits, accepting `files.` prefixes and GDC field names."""
        name = name.removeprefix("files.")
        return getattr(self, FIELD_ALIASES.get(name, name))


@dataclass
class ServedRange:
    """One /data body the server began to send: its first byte, how many bytes it handed (or was handing) to the
    socket, counted before each write so never fewer than the client can have received (a client that died may
    have received fewer), and when the request arrived and the body ended (time.monotonic of the serving process)."""

    file_id: str
    start: int
    sent: int = 0
    requested_at: float = 0.0
    finished_at: float | None = None
    cut: bool = False  # the server dropped this response on purpose (cut_after)

    @property
    def end(self) -> int:
        """One past the last byte handed to the socket."""
        return self.start + self.sent


@dataclass
class RecordedRequest:
    """What the server saw: method, path with query, headers, JSON body."""

    method: str
    path: str
    headers: dict
    body: dict | None = None


def _matches(served: ServedFile, filters: dict | None) -> bool:
    """Evaluate the GDC filter operators used by clients: and, or, in, =."""
    if not filters:
        return True
    op = filters["op"].lower()
    content = filters["content"]
    if op == "and":
        return all(_matches(served, clause) for clause in content)
    if op == "or":
        return any(_matches(served, clause) for clause in content)
    if op in ("in", "="):
        values = content["value"] if isinstance(content["value"], list) else [content["value"]]
        return served.value(content["field"]) in values
    raise ValueError(f"unsupported GDC filter op {op!r}")


def _hit(served: ServedFile, fields: list[str]) -> dict:
    """A data.hits entry with the requested fields, nested like the real API (cases[].submitter_id)."""
    hit: dict = {"id": served.file_id}
    for name in fields:
        if name == "cases.submitter_id":
            hit["cases"] = [{"submitter_id": served.submitter_id}]
        elif name.startswith("cases."):
            continue
        else:
            hit[name] = served.value(name)
    return hit


class GdcServer:
    """ThreadingHTTPServer on 127.0.0.1 (random port) in a daemon thread; use as a context manager."""

    def __init__(self, files: list[ServedFile] | None = None, token: str | None = None, port: int = 0):
        self.files: dict[str, ServedFile] = {}
        self.urls: dict[str, ServedFile] = {}  # plain URL paths (outside the API) -> file
        for served in files or []:
            self.add(served)
        self.token = token
        self.requests: list[RecordedRequest] = []
        self.served_ranges: list[ServedRange] = []  # every /data body begun, in order (see ranges_of)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    def add(self, served: ServedFile) -> ServedFile:
        """Register a file (replacing one with the same id)."""
        self.files[served.file_id] = served
        return served

    def add_url(self, path: str, served: ServedFile) -> str:
        """Serve a file at a plain URL path such as /datahub/study.tar.gz; return its full URL."""
        self.urls[path] = served
        return f"{self.url}{path}"

    def url_requests(self, path: str) -> list[RecordedRequest]:
        """The requests made for one plain URL path."""
        return [r for r in self.requests if urlsplit(r.path).path == path]

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def data_requests(self, file_id: str) -> list[RecordedRequest]:
        """The /data requests made for one file id."""
        return [r for r in self.requests if r.path == f"/data/{file_id}"]

    def ranges_of(self, file_id: str) -> list[ServedRange]:
        """The /data bodies begun for one file id, in the order the requests arrived."""
        with self._lock:
            return sorted((r for r in self.served_ranges if r.file_id == file_id), key=lambda r: r.requested_at)

    def files_requests(self) -> list[RecordedRequest]:
        """The /files queries made."""
        return [r for r in self.requests if urlsplit(r.path).path.rstrip("/") == "/files"]

    def start(self) -> "GdcServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "GdcServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def _handler_class(self):
        """The request handler class, closed over this server (its files, token, recorded requests and lock).

        Size: one handler class per server; its methods are the GDC endpoints and fault knobs, kept together."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - quiet; requests are recorded instead
                return

            def _record(self, body: dict | None) -> None:
                with server._lock:
                    server.requests.append(RecordedRequest(self.command, self.path, dict(self.headers), body))

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                parts = urlsplit(self.path)
                self._record(None)
                if parts.path in server.urls:
                    self._requested_at = time.monotonic()
                    return self._body(parts.path, server.urls[parts.path])
                if parts.path.rstrip("/") == "/files":
                    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                    if "filters" in query:
                        query["filters"] = json.loads(query["filters"])
                    return self._files(query)
                if parts.path.startswith("/files/"):
                    return self._file_record(parts.path.removeprefix("/files/"), parse_qs(parts.query))
                if parts.path.startswith("/data/"):
                    self._requested_at = time.monotonic()
                    return self._data(parts.path.removeprefix("/data/"))
                if parts.path.rstrip("/") == "/status":
                    return self._json(200, {"status": "OK", "tag": "fixture"})
                return self._json(404, {"message": f"no endpoint {parts.path}"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                self._record(body)
                if urlsplit(self.path).path.rstrip("/") == "/files":
                    return self._files(body)
                return self._json(404, {"message": f"no POST endpoint {self.path}"})

            def _files(self, query: dict) -> None:
                size = int(query.get("size", 10))
                start = int(query.get("from", 0))
                fields = [f for f in str(query.get("fields", "file_id,file_name")).split(",") if f]
                try:
                    matched = [f for f in server.files.values() if _matches(f, query.get("filters"))]
                except (KeyError, ValueError, AttributeError) as error:
                    return self._json(400, {"message": f"bad filters: {error}"})
                sort = str(query.get("sort", ""))
                if sort:
                    key, _, direction = sort.partition(":")
                    matched.sort(key=lambda f: f.value(key), reverse=direction == "desc")
                page = matched[start:start + size]
                self._json(200, {
                    "data": {
                        "hits": [_hit(f, fields) for f in page],
                        "pagination": {
                            "count": len(page), "total": len(matched), "size": size, "from": start, "sort": sort,
                            "page": start // size + 1 if size else 1,
                            "pages": math.ceil(len(matched) / size) if size else 1,
                        },
                    },
                    "warnings": {},
                })

            def _file_record(self, file_id: str, query: dict) -> None:
                """`/files/{id}?fields=...`: one file's metadata under `data`, like the real API."""
                served = server.files.get(file_id)
                if served is None:
                    return self._json(404, {"message": f"file {file_id} not found"})
                fields = [f for f in query.get("fields", ["file_id,file_name"])[-1].split(",") if f]
                self._json(200, {"data": _hit(served, fields), "warnings": {}})

            def _fail(self, served: ServedFile) -> None:
                data = json.dumps({"message": f"injected HTTP {served.fail_status}"}).encode()
                self.send_response(served.fail_status)
                if served.retry_after is not None:
                    self.send_header("Retry-After", served.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _begin_range(self, file_id: str, start: int, cut: bool) -> None:
                """Record a /data body about to be sent (server.served_ranges); _sent counts its bytes."""
                self._range = ServedRange(file_id, start, requested_at=getattr(self, "_requested_at", time.monotonic()),
                                          cut=cut)
                with server._lock:
                    server.served_ranges.append(self._range)

            def _sent(self, count: int) -> None:
                with server._lock:
                    self._range.sent += count

            def _end_range(self) -> None:
                with server._lock:
                    self._range.finished_at = time.monotonic()

            def _send_slowly(self, body: bytes, served: ServedFile) -> None:
                try:
                    for offset in range(0, len(body), served.send_chunk):
                        self._sent(min(served.send_chunk, len(body) - offset))
                        self.wfile.write(body[offset:offset + served.send_chunk])
                        self.wfile.flush()
                        time.sleep(served.send_delay_s)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _data(self, file_id: str) -> None:
                served = server.files.get(file_id)
                if served is None or served.content is None:
                    return self._json(404, {"message": f"file {file_id} not found"})
                if served.redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", f"{served.redirect_to.rstrip('/')}/data/{file_id}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if server.token is not None and self.headers.get("X-Auth-Token") != server.token:
                    return self._json(403, {"message": "a valid X-Auth-Token is required"})
                return self._body(file_id, served)

            def _body(self, file_id: str, served: ServedFile) -> None:
                """Serve a file's bytes with its fault knobs: failures, cuts, slow sends and Range requests.

                Size: the fault knobs and the Range answer of one response, in the order a server applies them."""
                with server._lock:
                    failing = served.fail_first > 0
                    if failing:
                        served.fail_first -= 1
                    cutting = not failing and served.cut_after is not None and served.cut_times > 0
                    if cutting:
                        served.cut_times -= 1
                if failing:
                    return self._fail(served)
                content = served.content
                start, end = 0, len(content) - 1
                requested = self.headers.get("Range")
                partial = requested is not None and not served.ignore_range
                if partial:
                    first, _, last = requested.removeprefix("bytes=").partition("-")
                    start = int(first)
                    end = min(int(last), end) if last else end
                    if start >= len(content):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(content)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                body = content[start:end + 1]
                self.send_response(206 if partial else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Disposition", f'attachment; filename="{served.file_name}"')
                self.send_header("Accept-Ranges", "bytes")
                if partial:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(content)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self._begin_range(file_id, start, cutting)
                try:
                    if cutting:
                        self._sent(len(body[:served.cut_after]))
                        self.wfile.write(body[:served.cut_after])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if served.send_chunk:
                        return self._send_slowly(body, served)
                    self._sent(len(body))
                    self.wfile.write(body)
                finally:
                    self._end_range()

        return Handler


def tar_archive(members: dict[str, bytes], compression: str = "gz") -> bytes:
    """A tar archive (gzip-compressed by default) holding the given member paths and contents, in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}" if compression else "w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(content), 0
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def files_from_folder(root: Path, project: str) -> list[ServedFile]:
    """Serve every regular file of a folder, with a file id derived from its name."""
    return [
        ServedFile(str(uuid.uuid5(uuid.NAMESPACE_URL, path.name)), path.name, path.read_bytes(),
                   submitter_id=path.name[:12], project=project)
        for path in sorted(root.iterdir()) if path.is_file()
    ]


def files_from_manifest(manifest: Path, project: str) -> list[ServedFile]:
    """Metadata-only entries for the rows of a GDC manifest (their /data answers 404)."""
    served = []
    for line in manifest.read_text().splitlines()[1:]:
        file_id, file_name, md5, size, state = line.split("\t")[:5]
        served.append(ServedFile(file_id, file_name, None, md5=md5, state=state, submitter_id=file_name[:12],
                                 project=project))
    return served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--root", type=Path, help="folder whose files are served at /data/<uuid5(name)>")
    parser.add_argument("--manifest", type=Path, help="GDC manifest whose rows are listed (metadata only)")
    parser.add_argument("--project", default="TCGA-BRCA", help="project id the served files belong to")
    parser.add_argument("--token", help="require this X-Auth-Token on /data")
    args = parser.parse_args()
    files = files_from_folder(args.root, args.project) if args.root else []
    if args.manifest:
        files += files_from_manifest(args.manifest, args.project)
    server = GdcServer(files, token=args.token, port=args.port)
    print(f"GDC fixture server at {server.url} serving {len(files)} files", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
