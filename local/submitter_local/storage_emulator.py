"""gcp-storage-emulator, started so that the real `gcloud` CLI can upload to it.

gcloud (apitools) sends its simple uploads (`uploadType=multipart`, e.g. the staging upload of
`gcloud ai-platform jobs submit training --package-path ... --staging-bucket ...`) with

    Content-Type: multipart/related; boundary='===============6637166194564336471=='

(apitools' transfer.py formats it with `'boundary=%r' % boundary`, i.e. Python's repr). The
boundary is in single quotes, which MIME does not treat as quoting (RFC 2045 allows a
token or a double-quoted string). The emulator hands the header to `email`, which then looks
for the boundary *with* the quotes, finds no parts, and the handler crashes with
`AttributeError: 'str' object has no attribute 'get_payload'` (the connection is dropped and
gcloud reports a ConnectionError). google-cloud-storage sends a valid header and is not hit.

The fix here: a request handler that rewrites such a header to the double-quoted form before
the emulator reads it (using `email.message.Message` to parse and re-serialize it), and a
server that uses that handler with the emulator's own storage and routing. Nothing of the
emulator is patched in place, so other in-process emulators are unaffected.

The same handler closes two gaps that matter to the submitter's exactly-once logic:
  - `ifGenerationMatch` on uploads (0 = must not exist) is enforced: a mismatch answers 412
    conditionNotMet, as GCS does, so create-only claims work on the local stack too;
  - a read pinned to `generation=N` of an object whose live generation differs answers 404, as GCS
    does for an overwritten generation without object versioning.

Requests are served concurrently, a thread per kept-alive connection (ThreadingHTTPServer, HTTP/1.1):
reading a request off its socket (headers and body) and sending the answer back run in parallel, while the
emulator's storage, which is not thread-safe, is touched by one request at a time under a lock. The
precondition checks above run under the same lock as the write they guard, so a create-only claim and its
check cannot interleave with another request: of N concurrent `ifGenerationMatch=0` uploads of one name
exactly one gets 200, the rest 412.

Media downloads also carry GCS's x-goog-generation / x-goog-metageneration / x-goog-stored-content-length
headers (the emulator sends none), so a client learns the generation it read from the read itself.

The emulator's in-memory Storage also serialises its whole metadata (every object of every bucket) to a
JSON snapshot on each write, a snapshot nothing in memory mode ever reads back: a burst of writes made
every write slower than the last (quadratic). `_MemoryStorage` skips that snapshot.

In-process:  `server = start("127.0.0.1", 0)`; `server.url`; `server.stop()`
CLI:         `python -m submitter_local.storage_emulator --host 127.0.0.1 --port 9023`
             (in memory; prints `storage emulator listening on http://HOST:PORT` once it accepts
             requests; exits 0 on SIGTERM/SIGINT, 1 when it cannot start)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import re
import signal
import sys
import threading
from collections.abc import Iterator
from email.message import Message
from email.parser import BytesParser
from functools import partial
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from gcp_storage_emulator.server import RequestHandler
from gcp_storage_emulator.storage import Storage

log = logging.getLogger(__name__)


def normalize_content_type(value: str) -> str:
    """Return `value` with a single-quoted multipart `boundary` parameter double-quoted.

    Any other header value is returned unchanged, e.g.
    `multipart/related; boundary='=a=='` -> `multipart/related; boundary="=a=="`.
    """
    msg = Message()
    msg["Content-Type"] = value
    if msg.get_content_maintype() != "multipart":
        return value
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or len(boundary) < 2 or boundary[0] != "'" or boundary[-1] != "'":
        return value
    msg.set_param("boundary", boundary[1:-1])  # set_param quotes the value with double quotes
    return msg["Content-Type"]


class _MemoryStorage(Storage):
    """The emulator's in-memory Storage without its per-write metadata snapshot.

    Storage writes `.meta` (json.dumps of every bucket's and object's metadata, indented) after each
    create, patch and delete, so that a disk-backed emulator can be restarted; in memory it is only read
    back when a Storage is constructed, i.e. never after. Skipping it keeps a write O(1) instead of
    O(objects stored).
    """

    def __init__(self) -> None:
        super().__init__(use_memory_fs=True)

    def _write_config_to_file(self) -> None:
        pass


class _FixedRequestHandler(RequestHandler):
    """The emulator's handler, with the Content-Type fixed before any handler reads it.

    Socket I/O runs outside `lock`: the body is read whole before it is taken and the answer is
    buffered while it is held and sent after. Everything that touches the storage, including the
    precondition checks, runs under it.
    """

    # Keep-alive: clients reuse a connection instead of opening one per request. Every answer carries a
    # Content-Length (the emulator's Response and _error set it) and every body is read whole, so the next
    # request on a connection starts where it should.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # an answer is one write; never hold it back for an earlier one's ACK

    def __init__(self, storage: Storage, lock: threading.Lock, *args: object, **kwargs: object) -> None:
        self.lock = lock
        super().__init__(storage, *args, **kwargs)

    def _read_body(self) -> None:
        """Read the request body off the socket into memory (chunked bodies decoded, Content-Length set)."""
        length = self.headers.get("Content-Length")
        if length is not None:
            body = self.rfile.read(int(length))
        elif (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            parts = []
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16) if line else 0
                if size == 0:
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            body = b"".join(parts)
            del self.headers["Transfer-Encoding"]
            self.headers["Content-Length"] = str(len(body))
        else:
            return
        self.rfile = io.BytesIO(body)

    @contextlib.contextmanager
    def _serialised(self) -> Iterator[None]:
        """Hold the storage lock with the answer buffered; send the buffered answer once it is released."""
        sock_in, sock_out = self.rfile, self.wfile
        self._read_body()
        self.wfile = io.BytesIO()
        try:
            with self.lock:
                yield
        finally:
            # the connection's next request (keep-alive) is read from the socket again
            self.rfile = sock_in
            answer, self.wfile = self.wfile.getvalue(), sock_out
            if answer:
                self.wfile.write(answer)

    def _fix_content_type(self) -> None:
        value = self.headers.get("Content-Type")
        if value:
            fixed = normalize_content_type(value)
            if fixed != value:
                self.headers.replace_header("Content-Type", fixed)

    def do_POST(self) -> None:
        self._fix_content_type()
        with self._serialised():
            if self._precondition_failed() or self._rewrite_precondition_failed():
                return
            super().do_POST()

    def do_GET(self) -> None:
        with self._serialised():
            if self._stale_generation():
                return
            self._object_headers = self._media_headers()
            try:
                super().do_GET()
            finally:
                self._object_headers = []

    _object_headers: list[tuple[str, str]] = []

    def _media_headers(self) -> list[tuple[str, str]]:
        """For a media download (`alt=media`), the headers GCS sends with it and the emulator does not:
        x-goog-generation, x-goog-metageneration and x-goog-stored-content-length. google-cloud-storage reads the
        generation from them, so a reader learns which generation it got in the same request."""
        url = urlsplit(self.path)
        match = self._OBJECT_RE.match(url.path)
        if not match or parse_qs(url.query).get("alt") != ["media"]:
            return []
        obj = self.storage.objects.get(unquote(match.group(1)), {}).get(unquote(match.group(2)))
        if not obj:
            return []
        return [("x-goog-generation", str(obj.get("generation", ""))),
                ("x-goog-metageneration", str(obj.get("metageneration", "1"))),
                ("x-goog-stored-content-length", str(obj.get("size", "")))]

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        if 200 <= code < 300:
            for name, value in self._object_headers:
                self.send_header(name, value)

    def do_DELETE(self) -> None:
        with self._serialised():
            super().do_DELETE()

    def do_PATCH(self) -> None:
        with self._serialised():
            super().do_PATCH()

    # -- generation semantics ----------------------------------------------------------------
    _UPLOAD_RE = re.compile(r"^/upload/storage/v1/b/([^/]+)/o$")
    _REWRITE_RE = re.compile(r"^/storage/v1/b/([^/]+)/o/(.+)/(?:rewriteTo|copyTo)/b/([^/]+)/o/(.+)$")
    _OBJECT_RE = re.compile(r"^/(?:download/)?storage/v1/b/([^/]+)/o/(.+)$")

    def _live_generation(self, bucket: str, name: str) -> int:
        obj = self.storage.objects.get(bucket, {}).get(name)
        return int(obj.get("generation") or 0) if obj else 0

    def _error(self, code: int, reason: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message,
                                     "errors": [{"reason": reason, "message": message}]}}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _precondition_failed(self) -> bool:
        """Enforce ifGenerationMatch on uploads; True when a 412 was sent."""
        url = urlsplit(self.path)
        match = self._UPLOAD_RE.match(url.path)
        query = parse_qs(url.query)
        if not match or "ifGenerationMatch" not in query or "upload_id" in query:
            return False
        if self.headers.get("Content-Length") is None:
            return False  # no body
        body = self.rfile.read()  # _read_body buffered it
        self.rfile = io.BytesIO(body)  # hand the same bytes on to the emulator
        name = query.get("name", [None])[0] or self._name_from_body(body)
        if name is None:
            return False
        expected = int(query["ifGenerationMatch"][0])
        if self._live_generation(unquote(match.group(1)), name) != expected:
            self._error(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.")
            return True
        return False

    def _rewrite_precondition_failed(self) -> bool:
        """Enforce ifGenerationMatch (destination) and ifSourceGenerationMatch on copies; True when a 412 was sent."""
        url = urlsplit(self.path)
        match = self._REWRITE_RE.match(url.path)
        if not match:
            return False
        query = parse_qs(url.query)
        src_bucket, src_name, dst_bucket, dst_name = (unquote(g) for g in match.groups())
        checks = [(query.get("ifGenerationMatch"), self._live_generation(dst_bucket, dst_name)),
                  (query.get("ifSourceGenerationMatch"), self._live_generation(src_bucket, src_name))]
        if any(wanted and int(wanted[0]) != live for wanted, live in checks):
            self._error(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.")
            return True
        return False

    def _name_from_body(self, body: bytes) -> str | None:
        content_type = self.headers.get("Content-Type") or ""
        try:
            if content_type.startswith("multipart/"):
                msg = BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
                first = msg.get_payload()[0].get_payload(decode=True)
                return json.loads(first).get("name")
            if content_type.startswith("application/json"):
                return json.loads(body).get("name")
        except (ValueError, IndexError, AttributeError, TypeError):
            return None
        return None

    def _stale_generation(self) -> bool:
        """A read pinned to a generation that is no longer live answers 404; True when sent."""
        url = urlsplit(self.path)
        match = self._OBJECT_RE.match(url.path)
        wanted = parse_qs(url.query).get("generation")
        if not match or not wanted:
            return False
        bucket, name = unquote(match.group(1)), unquote(match.group(2))
        live = self._live_generation(bucket, name)
        if live and live != int(wanted[0]):
            self._error(404, "notFound", f"No such object: {bucket}/{name}#{wanted[0]}")
            return True
        return False

    def do_PUT(self) -> None:
        self._fix_content_type()
        with self._serialised():
            super().do_PUT()


class _Server(ThreadingHTTPServer):
    # A burst opens many connections at once; the default backlog of 5 drops the rest's SYNs, which
    # clients then resend after a second or more.
    request_queue_size = 128


class StorageEmulator:
    """A running in-memory gcp-storage-emulator (with the gcloud multipart fix).

    Serves requests concurrently, a thread per connection; `lock` serialises their use of `storage` (not
    thread-safe). `url` is the value for STORAGE_EMULATOR_HOST; gcloud's `api_endpoint_overrides/storage`
    wants `url + "/storage/v1/"`.
    """

    def __init__(self, host: str, port: int):
        self.storage = _MemoryStorage()
        self.lock = threading.Lock()
        self._httpd = _Server((host, port), partial(_FixedRequestHandler, self.storage, self.lock))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="storage-emulator", daemon=True)

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> StorageEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()

    def wipe(self, keep_buckets: bool = False) -> None:
        """Delete every object (and bucket unless `keep_buckets`)."""
        with self.lock:
            self.storage.wipe(keep_buckets=keep_buckets)

    def __enter__(self) -> StorageEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(host: str = "127.0.0.1", port: int = 0) -> StorageEmulator:
    """Start an in-memory emulator on host:port (0 = a free port) in a background thread.

    Raises OSError when the port is taken. Returns the running server (`.url`, `.stop()`).
    """
    return StorageEmulator(host, port).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m submitter_local.storage_emulator",
                                description="In-memory gcp-storage-emulator that accepts gcloud's uploads.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9023, help="0 picks a free port (default 9023)")
    p.add_argument("--log-level", default="ERROR", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                   help="the emulator logs every request at INFO (default ERROR)")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:
        server = start(args.host, args.port)
    except OSError as e:
        print(f"cannot start the storage emulator: {e}", file=sys.stderr)
        return 1
    print(f"storage emulator listening on {server.url}", flush=True)
    try:
        while not done.wait(0.5):  # wake up regularly: signal handlers run between waits
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
