"""Complaints handled to a remedy: cases with their own lifecycle, SLA targets, the follow-up
after resolution, and what a case weighs in the customer's score."""
