"""Copy the REST operations the server uses out of Twilio's OpenAPI description.

    python -m tests.twilio_openapi.extract [PATH/twilio_api_v2010.json]

Twilio publishes the description of its 2010-04-01 API under the MIT licence
(LICENSE beside this file, `spec/json/twilio_api_v2010.json` of its public
twilio-oai repository; the project's copy is in ../shared/twilio/). This
keeps, for each operation the server sends, what a request can be checked
against: the path and its parameters, the form fields with their types,
formats, enums ($refs resolved) and descriptions (the prose states rules the
schema does not), the required fields and Twilio's `x-twilio.conditional`
groups. Writes calls.json beside this file; run again when the description
changes, and review the difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "twilio" / "twilio_api_v2010.json"
TARGET = HERE / "calls.json"

# (path, method): what the server does with it.
OPERATIONS = (
    ("/2010-04-01/Accounts/{Sid}.json", "get"),  # the start-up credentials check
    ("/2010-04-01/Accounts/{AccountSid}/Calls.json", "post"),  # ring a counselor
    ("/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json", "get"),
    ("/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json", "post"),  # redirect, cancel, end
)
KEPT = ("type", "format", "enum", "items", "minLength", "maxLength", "pattern", "description")


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.removeprefix("#/components/schemas/")
    return {**spec["components"]["schemas"][name], **{k: v for k, v in schema.items()
                                                     if k != "$ref"}}


def _field(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    schema = _resolve(schema, spec)
    kept = {k: schema[k] for k in KEPT if k in schema}
    if "items" in kept:
        kept["items"] = _field(kept["items"], spec)
    return kept


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    operations = []
    for path, method in OPERATIONS:
        operation = spec["paths"][path][method]
        body = (operation.get("requestBody", {}).get("content", {})
                .get("application/x-www-form-urlencoded", {}).get("schema", {}))
        operations.append({
            "operationId": operation["operationId"],
            "method": method.upper(),
            "path": path,
            "path_parameters": {
                p["name"]: _field(p["schema"], spec)
                for p in operation.get("parameters", []) if p["in"] == "path"
            },
            "query_parameters": sorted(
                p["name"] for p in operation.get("parameters", []) if p["in"] == "query"),
            "form": {name: _field(s, spec) for name, s in body.get("properties", {}).items()},
            "required": sorted(body.get("required", [])),
            "conditional": operation.get("x-twilio", {}).get("conditional", []),
        })
    return {
        "source": "twilio-oai spec/json/twilio_api_v2010.json (MIT licence: see LICENSE)",
        "servers": spec["paths"][OPERATIONS[1][0]].get("servers", []),
        "operations": operations,
    }


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else DEFAULT_SOURCE
    spec = json.loads(source.read_text(encoding="utf-8"))
    TARGET.write_text(json.dumps(extract(spec), indent=1, sort_keys=True) + "\n",
                      encoding="utf-8")
    print(f"wrote {TARGET} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
