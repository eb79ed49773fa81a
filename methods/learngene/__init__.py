"""Learngene (Wang, Geng et al., AAAI 2022): the collective model and its open-world stage, the
inheritance of the learngene, the EWC retain loss, and the `Method` that ties them together
(`method.py`); the cached stages every experiment shares are built in `stages.py`.
"""
