"""Who gets a chat and when: priority, conversations, agents, eligibility, claims, offers,
assignment plans, estimates and SLAs.
"""
