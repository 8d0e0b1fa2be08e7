//! `/v1/user-api-keys` (API.md section 4).
