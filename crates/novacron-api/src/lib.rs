//! NovaCron REST API: types, axum server, auth, OpenAPI document and typed client.
