//! `GET /openapi.json`: an OpenAPI 3.0 description of every endpoint, for
//! LMS integrators and for the schemathesis fuzz run in CI.
//!
//! Written out by hand from the wire types in `opptak-api`: their XML and
//! form codecs are hand-made too, so a derive would describe only the JSON.
//! The router test `openapi_lists_every_route` keeps the two in step.

use opptak_api::ErrorCode;
use serde_json::{Value, json};

const API: &str = "/restapi/personal/mediarecorder";

fn body(schema: &str, form_too: bool) -> Value {
    let reference = json!({ "schema": { "$ref": format!("#/components/schemas/{schema}") } });
    let mut content = json!({
        "application/json": reference,
        "text/json": reference,
        "application/xml": reference,
        "text/xml": reference,
    });
    if form_too {
        content["application/x-www-form-urlencoded"] = reference.clone();
    }
    json!({ "required": true, "content": content })
}

fn answers(schema: &str, extra: &[(&str, &str)]) -> Value {
    let mut responses = json!({
        "200": {
            "description": "Success",
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
        },
        "401": { "$ref": "#/components/responses/Unauthorized" },
        "503": { "$ref": "#/components/responses/Unavailable" },
    });
    for (status, description) in extra {
        responses[*status] = match *status {
            "400" => json!({ "$ref": "#/components/responses/Invalid" }),
            _ => {
                json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
            }
        };
    }
    responses
}

fn post(
    operation: &str,
    summary: &str,
    request: &str,
    response: &str,
    form_too: bool,
    extra: &[(&str, &str)],
) -> Value {
    json!({ "post": {
        "operationId": operation,
        "summary": summary,
        "requestBody": body(request, form_too),
        "responses": answers(response, extra),
    }})
}

const BODY_ERRORS: [(&str, &str); 3] =
    [("400", ""), ("413", "The body is over 2 MiB."), ("415", "The content type is not JSON, XML or form.")];

fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

/// The OpenAPI document.
pub fn document() -> Value {
    let with_404 = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        let mut all = BODY_ERRORS.to_vec();
        all.push(("404", "Unknown recording, or not yours."));
        all.extend_from_slice(extra);
        all
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Opptak native upload API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The LMS's native multipart upload family, as Opptak's embedded server implements it. Routes are case-insensitive.",
        },
        "security": [{ "bearer": [] }],
        "paths": {
            format!("{API}/native/upload/start/v1"): post("start", "Create a recording and its multipart upload session.", "StartRequest", "StartResponse", true, &BODY_ERRORS),
            format!("{API}/native/upload/parts/v1"): post("parts", "Presign part uploads.", "PartsRequest", "PartsResponse", false, &with_404(&[("409", "The session is aborted, expired or finished.")])),
            format!("{API}/native/upload/listparts/v1"): post("listparts", "What storage holds for the session.", "SessionRequest", "ListPartsResponse", true, &with_404(&[("409", "The session is aborted or expired.")])),
            format!("{API}/native/upload/abort/v1"): post("abort", "Abort the session and discard its parts.", "SessionRequest", "AbortResponse", true, &with_404(&[("409", "The session is already finished.")])),
            format!("{API}/native/upload/finish/v1"): post("finish", "Complete the upload and schedule processing.", "FinishRequest", "FinishResponse", false, &with_404(&[("409", "Aborted, expired, or finished with other parts.")])),
            format!("{API}/recordings/v1"): { "get": {
                "operationId": "recordings",
                "summary": "The caller's recordings, newest first.",
                "responses": answers("RecordingList", &[]),
            }},
            format!("{API}/recordings/{{recordingId}}/v1"): { "get": {
                "operationId": "recording",
                "summary": "One recording, with a short-lived mediaUrl when ready.",
                "parameters": [{ "name": "recordingId", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": answers("Recording", &[("404", "Unknown recording, or not yours.")]),
            }},
            "/healthz": { "get": {
                "operationId": "healthz", "summary": "Liveness: the database answers.", "security": [],
                "responses": { "200": { "description": "ok", "content": { "text/plain": { "schema": { "type": "string" } } } } },
            }},
            "/livez": { "get": {
                "operationId": "livez", "summary": "Liveness: the process serves HTTP.", "security": [],
                "responses": { "200": { "description": "ok", "content": { "text/plain": { "schema": { "type": "string" } } } } },
            }},
            "/readyz": { "get": {
                "operationId": "readyz",
                "summary": "Readiness for a load balancer: the database and the media store answer and the server is not draining.",
                "security": [],
                "responses": {
                    "200": { "description": "ready", "content": { "application/json": { "schema": { "type": "object" } } } },
                    "503": { "description": "Not ready: code is draining, database_unavailable or storage_unavailable.", "content": { "application/json": { "schema": { "type": "object", "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } } },
                },
            }},
            "/metrics": { "get": {
                "operationId": "metrics", "summary": "Prometheus metrics.", "security": [],
                "responses": { "200": { "description": "Prometheus text format", "content": { "text/plain": { "schema": { "type": "string" } } } } },
            }},
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Unauthorized": { "description": "No or bad token.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "Unavailable": { "description": "Storage or database unavailable; retry after Retry-After seconds.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "Invalid": { "description": "Every problem found, under the field it concerns.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
            },
            "schemas": schemas(),
        },
    })
}

fn schemas() -> Value {
    let content_type = json!({ "type": "string", "enum": ["audio/wav", "audio/flac", "audio/ogg", "video/mp4", "video/webm"] });
    let part_number = json!({ "type": "integer", "minimum": 1, "maximum": 10000 });
    let time = json!({ "type": "string", "format": "date-time" });
    json!({
        "StartRequest": {
            "type": "object",
            "required": ["recordingName", "recorderType", "isVideoRecording", "usedInFileUploader", "contentType"],
            "properties": {
                "recordingName": { "type": "string", "minLength": 1, "maxLength": 255 },
                "recorderType": { "type": "string", "minLength": 1, "maxLength": 255, "example": "desktop-audio" },
                "isVideoRecording": { "type": "boolean" },
                "usedInFileUploader": { "type": "boolean" },
                "contentType": content_type,
                "expectedSizeBytes": { "type": "integer", "minimum": 1, "nullable": true },
            },
        },
        "StartResponse": {
            "type": "object",
            "required": ["recordingId", "uploadId", "objectKey", "partSizeBytes", "maxParts", "expiresAt"],
            "properties": {
                "recordingId": string("The new recording."),
                "uploadId": string("Its multipart upload session."),
                "objectKey": string("Chosen by the server."),
                "partSizeBytes": { "type": "integer" },
                "maxParts": { "type": "integer" },
                "expiresAt": time,
            },
        },
        "PartsRequest": {
            "type": "object",
            "required": ["recordingId", "uploadId", "partNumbers"],
            "properties": {
                "recordingId": { "type": "string" },
                "uploadId": { "type": "string" },
                "partNumbers": { "type": "array", "minItems": 1, "maxItems": 100, "items": part_number },
                "contentMd5": { "type": "array", "items": { "type": "string", "format": "byte" }, "description": "Base64 MD5 per part, in the order of partNumbers." },
            },
        },
        "PartsResponse": {
            "type": "object",
            "required": ["parts"],
            "properties": { "parts": { "type": "array", "items": {
                "type": "object",
                "required": ["partNumber", "url", "method", "headers", "expiresAt"],
                "properties": {
                    "partNumber": part_number,
                    "url": { "type": "string" },
                    "method": { "type": "string", "enum": ["PUT"] },
                    "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                    "expiresAt": time,
                },
            }}},
        },
        "SessionRequest": {
            "type": "object",
            "required": ["recordingId", "uploadId"],
            "properties": { "recordingId": { "type": "string" }, "uploadId": { "type": "string" } },
        },
        "ListPartsResponse": {
            "type": "object",
            "required": ["parts"],
            "properties": { "parts": { "type": "array", "items": {
                "type": "object",
                "required": ["partNumber", "etag", "sizeBytes"],
                "properties": { "partNumber": part_number, "etag": { "type": "string" }, "sizeBytes": { "type": "integer" } },
            }}},
        },
        "AbortResponse": {
            "type": "object",
            "required": ["recordingId", "uploadId"],
            "properties": { "recordingId": { "type": "string" }, "uploadId": { "type": "string" } },
        },
        "FinishRequest": {
            "type": "object",
            "required": ["recordingId", "uploadId", "objectKey", "recordingName", "recorderType", "isVideoRecording", "usedInFileUploader", "parts"],
            "properties": {
                "recordingId": { "type": "string" },
                "uploadId": { "type": "string" },
                "objectKey": { "type": "string" },
                "recordingName": { "type": "string", "minLength": 1, "maxLength": 255 },
                "recorderType": { "type": "string", "minLength": 1, "maxLength": 255 },
                "isVideoRecording": { "type": "boolean" },
                "usedInFileUploader": { "type": "boolean" },
                "parts": { "type": "array", "minItems": 1, "maxItems": 10000, "items": {
                    "type": "object",
                    "required": ["partNumber", "etag"],
                    "properties": { "partNumber": part_number, "etag": { "type": "string", "minLength": 1 } },
                }},
            },
        },
        "FinishResponse": {
            "type": "object",
            "required": ["recordingId", "status", "statusUrl"],
            "properties": {
                "recordingId": { "type": "string" },
                "status": { "type": "string", "enum": ["processing", "ready", "failed"] },
                "statusUrl": { "type": "string" },
            },
        },
        "Recording": {
            "type": "object",
            "required": ["recordingId", "recordingName", "status", "contentType", "isVideoRecording", "createdAt"],
            "properties": {
                "recordingId": { "type": "string" },
                "recordingName": { "type": "string" },
                "status": { "type": "string", "enum": ["processing", "ready", "failed"] },
                "contentType": content_type,
                "isVideoRecording": { "type": "boolean" },
                "sizeBytes": { "type": "integer", "nullable": true },
                "durationSeconds": { "type": "number", "nullable": true },
                "createdAt": time,
                "readyAt": { "type": "string", "format": "date-time", "nullable": true },
                "error": { "type": "string", "nullable": true },
                "mediaUrl": { "type": "string", "nullable": true },
                "sha256": { "type": "string", "nullable": true },
            },
        },
        "RecordingList": { "type": "array", "items": { "$ref": "#/components/schemas/Recording" } },
        "Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "What went wrong, for a program: branch on this and the status, never on the message.",
                    "enum": ErrorCode::SENT.map(ErrorCode::as_str),
                },
                "message": { "type": "string" },
                "modelState": { "type": "object", "additionalProperties": { "type": "array", "items": { "type": "string" } } },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_schema_requires_a_code_and_lists_every_code_sent() {
        let error = &document()["components"]["schemas"]["Error"];
        assert_eq!(error["required"], json!(["code", "message"]));
        let listed: Vec<&str> = error["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for code in ErrorCode::SENT {
            assert!(listed.contains(&code.as_str()), "{code} is missing from {listed:?}");
        }
        assert_eq!(listed.len(), ErrorCode::SENT.len());
    }
}
