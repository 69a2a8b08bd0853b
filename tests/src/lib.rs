//! Shared helpers for the integration tests: topology bring-up, proxy start-up on free ports.
