"""aiogram implementations of the Protocols routing/ and surveys/ declare."""
