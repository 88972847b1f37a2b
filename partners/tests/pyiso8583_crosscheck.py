#!/usr/bin/env python3
"""Decode and encode ISO 8583 messages with pyiso8583, for posgate's cross-check.

Reads one JSON request on stdin:
  {"dialect": "ascii_1987" | "bcd_binary_1987",
   "n_fields": [field numbers whose data is BCD in bcd_binary_1987],
   "decode": [hex of packed messages],
   "encode": [{"t": "0200", "2": "4761...", ...}]}   (b fields as hex text)
and writes one JSON answer on stdout:
  {"decoded": [{"t": ..., "p": ..., "1": ..., "2": ...} or {"error": ...}],
   "encoded": [hex or {"error": ...}]}

ascii_1987 is pyiso8583's specs.default_ascii as is. bcd_binary_1987 is
specs.default (binary bitmaps, raw b fields) with a BCD MTI, BCD length
prefixes, and BCD data (left-padded with a zero nibble) for n fields.
Exit status 3 when pyiso8583 is not installed.
"""

import copy
import json
import sys

try:
    import iso8583
    from iso8583 import specs
except ImportError as error:  # pragma: no cover - reported to the Rust test
    print(f"pyiso8583 not importable: {error}", file=sys.stderr)
    sys.exit(3)


def bcd_binary_1987(n_fields):
    spec = copy.deepcopy(specs.default)
    spec["t"]["data_enc"] = "b"
    for key, field in spec.items():
        if key in ("h", "t", "p", "1"):
            continue
        if field["len_type"] > 0:
            field["len_enc"] = "bcd"
            # pyiso8583 counts BCD prefixes in bytes of prefix: LL = 1, LLL = 2.
            field["len_type"] = 1 if field["len_type"] == 2 else 2
        if int(key) in n_fields:
            field["data_enc"] = "b"
            field["len_count"] = "nibbles"
            field["left_pad"] = "0"
    return spec


def main():
    request = json.load(sys.stdin)
    if request["dialect"] == "ascii_1987":
        spec = specs.default_ascii
    elif request["dialect"] == "bcd_binary_1987":
        spec = bcd_binary_1987(set(request.get("n_fields", [])))
    else:
        raise SystemExit(f"unknown dialect {request['dialect']}")

    decoded = []
    for packed in request.get("decode", []):
        try:
            doc, _ = iso8583.decode(bytearray.fromhex(packed), spec)
            doc.pop("h", None)
            decoded.append(doc)
        except Exception as error:  # report, do not stop: the Rust side compares
            decoded.append({"error": f"{type(error).__name__}: {error}"})

    encoded = []
    for doc in request.get("encode", []):
        try:
            packed, _ = iso8583.encode(dict(doc), spec)
            encoded.append(bytes(packed).hex().upper())
        except Exception as error:
            encoded.append({"error": f"{type(error).__name__}: {error}"})

    json.dump({"decoded": decoded, "encoded": encoded}, sys.stdout)


if __name__ == "__main__":
    main()
