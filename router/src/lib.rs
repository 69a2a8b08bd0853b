//! Routing decisions for PeakGate.
