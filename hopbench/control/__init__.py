"""The orchestrator's side of the control protocol: its handle on each child (a local
process or an agent over TCP), and the agent that serves one."""
