//! Reference shop on PeakGate. A stub until the reference-shop issue lands.
