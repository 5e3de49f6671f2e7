"""Rectified-flow training objective and samplers over packed rows."""
