"""A real SMTP server for Orgstack's email tests (aiosmtpd).

    python3 tests/smtp/server.py MESSAGES_FILE PORT

Each message received is appended to MESSAGES_FILE as one JSON line: the
envelope sender and recipients, the subject, and the text and HTML parts.
Prints "listening PORT" when ready; stops when its stdin closes (when the
test process that started it ends).
"""
import email
import json
import sys
from email import policy

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        parts = {}
        for part in message.walk():
            kind = part.get_content_type()
            if kind in ("text/plain", "text/html") and kind not in parts:
                parts[kind] = part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "from": str(message["from"]),
            "subject": str(message["subject"]),
            "multipart": message.get_content_type(),
            "text": parts.get("text/plain"),
            "html": parts.get("text/html"),
        }
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return "250 OK"


def main():
    path, port = sys.argv[1], int(sys.argv[2])
    open(path, "a").close()
    controller = Controller(Keep(path), hostname="127.0.0.1", port=port)
    controller.start()
    print("listening", port, flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
