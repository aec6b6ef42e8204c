"""A real third-party SMTP server for the tests: aiosmtpd (Debian's python3-aiosmtpd).

Plaintext on loopback, AUTH PLAIN/LOGIN required (user "agent", password from --password),
replies chosen by the recipient's local part the way real servers refuse:

  temp-4NN@  -> 4NN at RCPT TO       perm-5NN@ -> 5NN at RCPT TO
  data-NNN@  -> NNN after the final dot (the whole message)
  --max-rcpt N -> "452 4.5.3 Too many recipients" past N recipients in one transaction

Prints {"port": N} on the first line of stdout once it listens, then one JSON line per message it accepted:
{"mail_from", "rcpt_tos", "data"}. Runs until stdin closes.
"""

import argparse
import asyncio
import json
import re
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SCRIPTED = re.compile(r"^(temp|perm|data)-(\d{3})(?:[.+_-][^@]*)?@", re.IGNORECASE)


class Handler:
    def __init__(self, max_rcpt):
        self.max_rcpt = max_rcpt

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        match = SCRIPTED.match(address)
        if match and match.group(1).lower() in ("temp", "perm"):
            code = int(match.group(2))
            enhanced = "4.2.0" if code < 500 else "5.1.1"
            return f"{code} {enhanced} <{address}>: refused as asked (aiosmtpd)"
        if self.max_rcpt and len(envelope.rcpt_tos) >= self.max_rcpt:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        for address in envelope.rcpt_tos:
            match = SCRIPTED.match(address)
            if match and match.group(1).lower() == "data":
                code = int(match.group(2))
                return f"{code} {'4.3.0' if code < 500 else '5.7.1'} Refused at end of data as asked (aiosmtpd)"
        content = envelope.original_content or envelope.content
        print(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": content.decode("utf-8", "replace") if isinstance(content, bytes) else content,
        }), flush=True)
        return "250 2.0.0 Message accepted for delivery"


def authenticator(password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"agent" \
            and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)
    return check


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--size", type=int, default=0, help="SIZE limit in bytes (0: none announced)")
    parser.add_argument("--no-smtputf8", action="store_true")
    parser.add_argument("--max-rcpt", type=int, default=0)
    args = parser.parse_args()

    controller = Controller(
        Handler(args.max_rcpt),
        hostname="127.0.0.1",
        port=args.port,
        authenticator=authenticator(args.password),
        auth_required=True,
        auth_require_tls=False,
        data_size_limit=args.size or None,
        enable_SMTPUTF8=not args.no_smtputf8,
        decode_data=False,
    )
    controller.start()
    print(json.dumps({"port": args.port}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    controller.stop()


asyncio.run(main())
