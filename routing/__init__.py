"""The domain: customers, tiers, the queue and deliveries. Never imports aiogram, bot or surveys."""
