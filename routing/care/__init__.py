"""Care that reaches out before the customer has to: follow-up visits per tier and at-risk
calls as tasks for the account manager (else a pool of agents), with reminders."""
