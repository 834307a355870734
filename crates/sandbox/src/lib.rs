//! forge sandbox (work in progress).
