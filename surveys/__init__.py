"""CSAT and NPS: the durable outbox, campaigns, answers and their feedback, the push sender.
Never imports aiogram or bot.
"""
