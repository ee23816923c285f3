"""Routers, one per audience. Agents first: a registered agent never gets the customer flow."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import agent, customer


def get_routers() -> list[Router]:
    return [agent.router, customer.router]
