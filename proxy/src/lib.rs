//! PeakGate library.
