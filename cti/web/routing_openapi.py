"""The OpenAPI 3.1 document of the routing configuration API (cti.web.routing_api).

Owns: the JSON Schemas of the request bodies (the routing document of routing.config
and its queues, agents, rules and skills) and the description of every route. The
hub serves it at GET /api/routing/openapi.json; docs/openapi/routing.json is the same
document, generated:

    python -m cti.web.routing_openapi > docs/openapi/routing.json

The schemas describe the shape; routing.config is the judge (expressions, skill names,
overflow targets), and the API's 422 names the field that is wrong either way.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_NAME = {"type": "string", "minLength": 1}
_SECONDS = {"type": "number", "exclusiveMinimum": 0}
_EXPRESSION = {
    "type": "string",
    "minLength": 1,
    "description": "A routing expression, e.g. `sales >= 3 and \"de\" in languages`; `$name` is a contact attribute",
}

SCHEMAS: dict[str, Any] = {
    "Action": {
        "type": "object",
        "description": "What happens to a contact past a queue's maximum length or maximum wait.",
        "properties": {
            "action": {"enum": ["overflow", "callback", "disconnect", "reject"]},
            "to_queue": {**_NAME, "description": "overflow only: the queue the contact moves to"},
            "message": {"type": "string", "description": "disconnect: what the customer is told"},
        },
        "required": ["action"],
        "additionalProperties": False,
    },
    "Step": {
        "type": "object",
        "description": "From `after_s` seconds in the queue on, agents matching `requirement` qualify too.",
        "properties": {"after_s": {"type": "number", "minimum": 0}, "requirement": _EXPRESSION},
        "required": ["after_s", "requirement"],
        "additionalProperties": False,
    },
    "Queue": {
        "type": "object",
        "properties": {
            "name": _NAME,
            "display_name": {"type": "string"},
            "numbers": {"type": "array", "items": {"type": "string"}},
            "required_skills": {"type": "array", "items": _NAME},
            "requirement": _EXPRESSION,
            "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
            "priority": {"type": "integer"},
            "aging_step_s": _SECONDS,
            "strategy": {"enum": ["longest_idle", "best_proficiency", "round_robin", "least_occupied"]},
            "service_level_s": _SECONDS,
            "max_length": {"type": "integer", "minimum": 0},
            "on_full": {"$ref": "#/components/schemas/Action"},
            "max_wait_s": _SECONDS,
            "on_timeout": {"$ref": "#/components/schemas/Action"},
            "reservation_timeout_s": _SECONDS,
            "wrap_up_s": {"type": "number", "minimum": 0},
        },
        "additionalProperties": False,
    },
    "Agent": {
        "type": "object",
        "properties": {
            "id": _NAME,
            "display_name": {"type": "string"},
            "skills": {
                "oneOf": [
                    {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 5}},
                    {"type": "array", "items": _NAME},
                ],
                "description": "skill -> proficiency 1..5, or a list (level 1)",
            },
            "languages": {"type": "array", "items": _NAME},
            "attributes": {
                "type": "object",
                "additionalProperties": {
                    "oneOf": [
                        {"type": "string"}, {"type": "number"}, {"type": "boolean"},
                        {"type": "array", "items": {"type": "string"}},
                    ]
                },
            },
            "capacity": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            "voice_exclusive": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    "Rule": {
        "type": "object",
        "description": "Applied on arrival when `when` holds over the contact's attributes.",
        "properties": {
            "name": _NAME,
            "when": _EXPRESSION,
            "require": _EXPRESSION,
            "priority": {"type": "integer"},
            "relax_after_s": _SECONDS,
        },
        "additionalProperties": False,
    },
    "Skills": {"type": "array", "items": _NAME, "uniqueItems": True},
    "RoutingDocument": {
        "type": "object",
        "properties": {
            "skills": {"$ref": "#/components/schemas/Skills"},
            "routing": {
                "type": "object",
                "properties": {
                    "max_missed_offers": {"type": ["integer", "null"], "minimum": 1},
                    "preferred_agent_s": {"type": "number", "minimum": 0},
                },
                "additionalProperties": False,
            },
            "queues": {
                "type": "array",
                "items": {"allOf": [{"$ref": "#/components/schemas/Queue"}, {"required": ["name"]}]},
            },
            "agents": {
                "type": "array",
                "items": {"allOf": [{"$ref": "#/components/schemas/Agent"}, {"required": ["id"]}]},
            },
            "rules": {
                "type": "array",
                "items": {"allOf": [{"$ref": "#/components/schemas/Rule"}, {"required": ["name", "when"]}]},
            },
        },
        "additionalProperties": False,
    },
    "Configuration": {
        "type": "object",
        "properties": {
            "revision": {"type": "integer", "description": "goes up with every saved change; 0: never saved"},
            "source": {"type": "string", "description": "where the configuration in force came from"},
            "updated_at": {"type": ["string", "null"], "format": "date-time"},
            "updated_by": {"type": ["string", "null"]},
            "config": {"$ref": "#/components/schemas/RoutingDocument"},
        },
        "required": ["revision", "source", "config"],
    },
    "Error": {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "a stable slug"},
            "detail": {"type": "string"},
            "field": {"type": "string", "description": "the field path at fault, e.g. queues[2].max_length"},
        },
        "required": ["error", "detail"],
    },
}

# The request body each writing route takes (the test validates examples against them).
REQUEST_BODIES = {
    ("/api/routing/config", "put"): "RoutingDocument",
    ("/api/routing/skills", "put"): "Skills",
    ("/api/routing/queues/{name}", "put"): "Queue",
    ("/api/routing/agents/{agent_id}", "put"): "Agent",
    ("/api/routing/rules/{name}", "put"): "Rule",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "401": _json(_ref("Error"), "not logged in"),
    "403": _json(_ref("Error"), "the session may not configure routing (routing.configure), or a missing CSRF token"),
}
_WRITE_ERRORS = {
    **_ERRORS,
    "400": _json(_ref("Error"), "the body is not JSON"),
    "409": _json(_ref("Error"), "the live router refused the change"),
    "422": _json(_ref("Error"), "invalid configuration; `field` is the path of the field at fault"),
}


def _path_param(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": what}


def _get(summary: str, schema: dict[str, Any], *, not_found: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(schema, "found"), **_ERRORS}
    if not_found:
        responses["404"] = _json(_ref("Error"), "no such item")
    return {"summary": summary, "responses": responses}


def _put(summary: str, body: str, answer: dict[str, Any], *, created: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(answer, "saved and in force"), **_WRITE_ERRORS}
    if created:
        responses["201"] = _json(answer, "added, saved and in force")
    return {"summary": summary, "requestBody": {"required": True, **_json(_ref(body), body)}, "responses": responses}


def openapi_document() -> dict[str, Any]:
    items = {
        "queues": ("name", "Queue", "queue"),
        "agents": ("agent_id", "Agent", "agent (must exist in the directory)"),
        "rules": ("name", "Rule", "arrival rule"),
    }
    paths: dict[str, Any] = {
        "/api/routing/openapi.json": {
            "get": _get("This document", {"type": "object"}),
        },
        "/api/routing/config": {
            "get": _get("The whole routing configuration in force (the directory's additions included)", _ref("Configuration")),
            "put": _put("Replace the whole configuration: checked, saved, then applied to the live router",
                        "RoutingDocument", _ref("Configuration")),
        },
        "/api/routing/skills": {
            "get": _get("The skills", _ref("Skills")),
            "put": _put("Replace the skills (the directory's stay)", "Skills", _ref("Skills")),
        },
    }
    for section, (param, schema, what) in items.items():
        paths[f"/api/routing/{section}"] = {"get": _get(f"Every {what.split(' ')[0]}", {"type": "array", "items": _ref(schema)})}
        one: dict[str, Any] = {
            "parameters": [_path_param(param, f"the {what.split(' ')[0]}'s {'id' if param == 'agent_id' else 'name'}")],
            "get": _get(f"One {what}", _ref(schema), not_found=True),
            "put": _put(
                f"Add or replace one {what}; a 422's `field` is relative to it (e.g. `max_length`)",
                schema, _ref(schema), created=True,
            ),
        }
        if section == "rules":
            one["delete"] = {
                "summary": "Delete an arrival rule",
                "responses": {
                    "200": _json(_ref("Configuration"), "deleted and in force"),
                    "404": _json(_ref("Error"), "no such rule"),
                    **_WRITE_ERRORS,
                },
            }
        paths[f"/api/routing/{section}/{{{param}}}"] = one
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CTI Hub routing configuration",
            "version": "1",
            "description": (
                "Queues, skills, agents and arrival rules of the ACD. Every change is checked in full, saved in "
                "the database (a restart keeps it) and applied to the live router. Queues and agents are those "
                "of the directory (users, queues, numbers); the configuration adds the routing model. Bearer "
                "token or session cookie (with X-CSRF-Token on writes); permission routing.configure (admins). "
                "See docs/routing.md."
            ),
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "ctihub_session"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }


def main() -> int:
    sys.stdout.write(json.dumps(openapi_document(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
