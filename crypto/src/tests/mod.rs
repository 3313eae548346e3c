//! Whole-session tests.
