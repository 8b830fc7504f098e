"""Start moto (the AWS emulator) on loopback for the test command and the local stack.

Plain `moto_server` keeps sent SMS only in process memory; this launcher serves the same
emulator plus two read-only endpoints that return what SES and SNS "sent":

    GET /_notify/emails  ->  [{"message_id", "source", "to", "subject", "body", "headers"}]
    GET /_notify/sms     ->  [{"message_id", "phone_number", "message"}]

moto's SES v2 drops a simple message's `Headers` (e.g. `List-Unsubscribe`); this launcher reads
them from each SendEmail request on its way in and lists them with the message moto recorded.

Usage: python localstack/moto_server.py [--port N] [--port-file PATH]
With --port 0 (the default) it picks a free port and writes it to --port-file.
"""

import argparse
import io
import json
import os
import sys
import threading

from werkzeug.serving import make_server

from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.server import DomainDispatcherApplication, create_backend_app


def _backends(backend_dict):
    for account_id in list(backend_dict.keys()):
        regions = backend_dict[account_id]
        for region in list(regions.keys()):
            yield regions[region]


# SES v2 SendEmail: the headers of each simple message, by the message id moto answered with.
_HEADERS = {}
_HEADERS_LOCK = threading.Lock()


def _emails():
    from moto.ses.models import ses_backends

    out = []
    for backend in _backends(ses_backends):
        for m in backend.sent_messages:
            to = []
            for kind in ("ToAddresses", "CcAddresses", "BccAddresses"):
                to.extend((getattr(m, "destinations", None) or {}).get(kind, []))
            out.append(
                {
                    "message_id": getattr(m, "id", None),
                    "source": getattr(m, "source", None),
                    "to": to,
                    "subject": getattr(m, "subject", None),
                    "body": getattr(m, "body", None),
                    "headers": _HEADERS.get(getattr(m, "id", None), []),
                }
            )
    return out


def _sms():
    from moto.sns.models import sns_backends

    out = []
    for backend in _backends(sns_backends):
        for message_id, (phone_number, message) in backend.sms_messages.items():
            out.append({"message_id": message_id, "phone_number": phone_number, "message": message})
    return out


class WithSentMessages:
    """WSGI middleware: the two read-only endpoints, everything else to moto."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in ("/_notify/emails", "/_notify/sms"):
            body = json.dumps(_emails() if path.endswith("emails") else _sms()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if path == "/v2/email/outbound-emails" and environ.get("REQUEST_METHOD") == "POST":
            return self._send_email(environ, start_response)
        return self.app(environ, start_response)

    def _send_email(self, environ, start_response):
        """Passes SendEmail to moto, keeping the simple message's headers under its answer's id."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(request)
        try:
            headers = json.loads(request or b"{}").get("Content", {}).get("Simple", {}).get("Headers", [])
        except ValueError:
            headers = []
        chunks = list(self.app(environ, start_response))
        if headers:
            try:
                message_id = json.loads(b"".join(chunks)).get("MessageId")
            except ValueError:
                message_id = None
            if message_id:
                with _HEADERS_LOCK:
                    _HEADERS[message_id] = headers
        return chunks


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()

    app = WithSentMessages(DomainDispatcherApplication(create_backend_app))
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, args.port_file)
    print(f"moto listening on http://{args.host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
