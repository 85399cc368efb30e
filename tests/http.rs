//! HTTP contract tests (filled below).
