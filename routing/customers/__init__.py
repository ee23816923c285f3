"""Who the customers are: identity and linking, phones, invitations, the importer, orders."""
