#!/usr/bin/env python3
"""Checks JSON messages against a JSON Schema: every line of VALID must validate, every line of
INVALID must not. Usage: check_schema.py SCHEMA VALID INVALID (files of JSON lines)."""
import json
import sys

import jsonschema


def lines(path):
    with open(path, encoding="utf-8") as f:
        return [line for line in f.read().splitlines() if line.strip()]


def main():
    schema_path, valid_path, invalid_path = sys.argv[1:4]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    failures = []
    valid, invalid = lines(valid_path), lines(invalid_path)
    for line in valid:
        errors = list(validator.iter_errors(json.loads(line)))
        if errors:
            failures.append(f"should validate but does not ({errors[0].message}): {line}")
    for line in invalid:
        if validator.is_valid(json.loads(line)):
            failures.append(f"should be rejected but validates: {line}")
    for f in failures:
        print(f, file=sys.stderr)
    if failures or not valid or not invalid:
        print(f"{len(failures)} failures ({len(valid)} valid, {len(invalid)} invalid lines)", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {len(valid)} valid and {len(invalid)} invalid messages behave as the schema says")


if __name__ == "__main__":
    main()
