//! Helpers for black-box tests that spawn real oxcd processes.
