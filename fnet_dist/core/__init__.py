"""The foundation below every stage."""
