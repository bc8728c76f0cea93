//! sealgate's end-to-end tests live in `tests/tests/`; this library is empty.
#![forbid(unsafe_code)]
