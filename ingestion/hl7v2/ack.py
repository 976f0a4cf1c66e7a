"""HL7 v2 acknowledgements: an ACK (MSA, one ERR per problem) in the sender's terms."""

from __future__ import annotations

import datetime
import hashlib

from ingestion.hl7v2.datatypes import LOCAL_TZ
from ingestion.hl7v2.er7 import SUPPORTED_VERSIONS
from ingestion.hl7v2.results import Hl7Header, Hl7Problem

ERROR_TEXT = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "205": "Duplicate key identifier",
    "207": "Application internal error",
}


def _escape(text: str, header: Hl7Header | None) -> str:
    sep = header.field_separator if header else "|"
    enc = header.encoding if header else "^~\\&"
    escape = enc[2] if len(enc) > 2 else "\\"
    out = text.replace(escape, f"{escape}E{escape}")
    for char, code in ((sep, "F"), (enc[0], "S"), (enc[1], "R"), (enc[3:4] or "&", "T")):
        out = out.replace(char, f"{escape}{code}{escape}")
    return out.replace("\r", " ").replace("\n", " ")


def ack(
    *,
    header: Hl7Header | None,
    code: str,
    problems: list[Hl7Problem],
    text: str,
    receiver: str = "SHAREDRECORD",
    control_id: str = "",
) -> bytes:
    """An ACK (MSA + ERR per problem) in the sender's version and separators, CR-separated."""
    sep = header.field_separator if header else "|"
    enc = header.encoding if header else "^~\\&"
    now = datetime.datetime.now(LOCAL_TZ).strftime("%Y%m%d%H%M%S%z")
    version = header.version if header and header.version in SUPPORTED_VERSIONS else "2.5.1"
    event = header.event if header else ""
    ours = control_id or hashlib.sha256(f"{now}{text}".encode()).hexdigest()[:20]
    msh = sep.join(
        [
            "MSH",
            enc,
            receiver,
            "",
            _escape(header.sending_application, header) if header else "",
            _escape(header.sending_facility, header) if header else "",
            now,
            "",
            f"ACK{enc[0]}{event}{enc[0]}ACK" if event else "ACK",
            ours,
            (header.processing_id if header and header.processing_id else "P"),
            version,
        ]
    )
    msa = sep.join(
        [
            "MSA",
            code,
            _escape(header.control_id if header else "", header),
            _escape(text[:80], header),
        ]
    )
    segments = [msh, msa]
    for p in problems[:50]:
        where = p.location.replace("^", enc[0])
        err_code = f"{p.code}{enc[0]}{ERROR_TEXT.get(p.code, 'Error')}{enc[0]}HL70357"
        segments.append(
            sep.join(
                ["ERR", "", where, err_code, p.severity, "", "", "", _escape(p.message, header)]
            )
        )
    return ("\r".join(segments) + "\r").encode("utf-8")
