"""Loopback fakes of the upstream APIs soragate cannot reach from here. Each keeps task
state (queued → running → done) and can inject faults."""
