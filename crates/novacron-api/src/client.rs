//! Typed HTTP client of the API (filled in below).
