#!/usr/bin/env bash
# Validates docs/openapi.json against the OpenAPI 3.1 specification with a real validator
# (openapi-spec-validator: the meta-schema plus its semantic checks), beyond the structural
# checks of tests/rest_openapi.rs. CI installs the validator (.ci/run); by hand:
#   python3 -m pip install openapi-spec-validator==0.9.0 && tools/check-openapi.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python3 -m openapi_spec_validator "$root/docs/openapi.json"
