"""Learngene (Wang, Geng et al., AAAI 2022): collective model, open-world stage, inheritance, EWC.

See `methods/learngene/method.py` for the registered methods and the functions experiments call.
"""
