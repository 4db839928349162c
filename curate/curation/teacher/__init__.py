"""The teacher of regime D: prompt, backends and output parsing (see DESIGN.md)."""
