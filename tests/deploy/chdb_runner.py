"""Runs SQL in a fresh chDB process for the deploy tests (one embedded store per process).

Reads a JSON object on stdin and prints a JSON list, one entry per statement:
  {"mode": "parse", "statements": [...]}  -> formatQuerySingleLine of each, or its error
  {"mode": "execute", "connect": "file:PATH?config-file=CFG", "statements": [...]}
                                           -> each statement's TSV result, or its error
"""

from __future__ import annotations

import json
import sys

import chdb

# A top-level String query parameter is read in ClickHouse's escaped (TSV) form.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def main() -> None:
    job = json.load(sys.stdin)
    results = []
    if job["mode"] == "parse":
        for sql in job["statements"]:
            try:
                text = chdb.query(
                    "SELECT formatQuerySingleLine({q:String})",
                    "TSVRaw",
                    params={"q": sql.translate(_ESCAPES)},
                )
                results.append({"ok": True, "out": text.bytes().decode().strip()})
            except Exception as exc:  # chDB raises RuntimeError for a syntax error
                results.append({"ok": False, "out": str(exc)})
    else:
        conn = chdb.connect(job["connect"])
        for sql in job["statements"]:
            try:
                results.append({"ok": True, "out": conn.query(sql, "TSVRaw").bytes().decode().strip()})
            except Exception as exc:
                results.append({"ok": False, "out": str(exc)})
        conn.close()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
