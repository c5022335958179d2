"""A real SMTP server for the mail tests (aiosmtpd).

Usage: python3 sink.py PORT OUTDIR
Listens on 127.0.0.1:PORT, prints "READY" once accepting, and writes each message it
receives to OUTDIR/NNNN.json as {"mail_from", "rcpt_tos", "subject", "text",
"attachments": [{"filename", "content"}]} (text parts decoded). Stops when stdin closes.
"""

import email
import email.policy
import json
import os
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = ""
        attachments = []
        for part in message.walk():
            if part.is_multipart():
                continue
            filename = part.get_filename()
            payload = part.get_payload(decode=True) or b""
            if filename:
                attachments.append(
                    {"filename": filename, "content": payload.decode("utf-8", "replace")}
                )
            elif part.get_content_type() == "text/plain":
                text += payload.decode(part.get_content_charset() or "utf-8", "replace")
        self.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(message["Subject"]),
            "text": text.replace("\r\n", "\n"),
            "attachments": attachments,
        }
        path = os.path.join(self.outdir, "%04d.json" % self.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


def main():
    port, outdir = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(outdir), hostname="127.0.0.1", port=port)
    controller.start()
    print("READY", flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
