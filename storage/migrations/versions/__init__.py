"""Revision files of our tables, one per schema change, numbered 0001, 0002, ... (see
``storage.migrations``)."""
