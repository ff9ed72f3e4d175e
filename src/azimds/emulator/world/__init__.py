"""What changes while the emulator runs: its VMs, fleet, events, clock, faults and journal, and their store."""
