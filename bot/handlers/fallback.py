"""What no feature router took, per audience: stale buttons, unknown commands, and the
messages that are simply for the other side (an agent's reply to a customer; a customer's
text for self-service search, or for the person in their open chat).

Inline queries too: an agent's picks a canned reply (bot/handlers/desk_tools.py), anyone
else's gets no results.

These handlers match anything, so they live apart from the features and
bot/handlers/__init__.py attaches each audience's fallback after all of its features: adding
or reordering a feature can never put it behind a catch-all.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, InlineQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from sqlalchemy.ext.asyncio import AsyncSession

from bot import texts
from bot.desk import Desk
from bot.filters import NoDeskFeatureWants, NoFeatureWants
from bot.handlers import agent as agent_handlers
from bot.handlers import desk_tools
from bot.handlers.customer import human
from bot.handlers.customer.context import CustomerContext
from routing.clock import Clock
from routing.policy.root import Policy
from routing.store.models import Agent, Conversation

agents = Router(name="agents-fallback")
customers = Router(name="customers-fallback")
# Each audience's router tries its quick lane first: a message no feature wants skips their
# filters (bot/filters.py NoFeatureWants, NoDeskFeatureWants).
customers_quick = Router(name="customers-quick")
agents_quick = Router(name="agents-quick")


# --- agents ------------------------------------------------------------------------------
@agents.callback_query()
async def agent_stale_button(query: CallbackQuery, callback_answer: CallbackAnswer) -> None:
    callback_answer.text = texts.agent.button_gone()


@agents.message(F.text.startswith("/"))
async def agent_unknown_command(message: Message, agent: Agent) -> None:
    await message.answer(f"{texts.agent.unknown_command()}\n\n{agent_handlers.help_text(agent)}")


@agents_quick.message(NoDeskFeatureWants())
@agents.message()
async def agent_message(
    message: Message, session: AsyncSession, agent: Agent, desk: Desk, clock: Clock
) -> None:
    """Anything else an agent sends is for a customer (and answers its complaint cases:
    ``agent_handlers.relay`` acknowledges them)."""
    await agent_handlers.relay(message, session, agent, desk, clock)


@agents.inline_query()
async def agent_inline(
    query: InlineQuery, session: AsyncSession, agent: Agent, policy: Policy
) -> None:
    """An agent's inline query (``@bot`` + words) picks a canned reply."""
    await desk_tools.inline_canned(query, session, agent, policy)


# --- customers ---------------------------------------------------------------------------
@customers.callback_query()
async def customer_stale_button(query: CallbackQuery, callback_answer: CallbackAnswer) -> None:
    callback_answer.text = texts.customer.button_gone()


@customers.inline_query()
async def customer_inline(query: InlineQuery) -> None:
    """Inline mode is the agents' (canned replies): anyone else gets no results."""
    await query.answer([], cache_time=300, is_personal=True)


@customers.message(F.text.startswith("/"))
async def customer_unknown_command(message: Message) -> None:
    await message.answer(f"{texts.customer.unknown_command()}\n\n{texts.customer.help_text()}")


@customers_quick.message(NoFeatureWants())
@customers.message()
async def customer_message(
    message: Message, ctx: CustomerContext, open_conversation: Conversation | None
) -> None:
    """Anything else: into the open chat, a new VIP chat, or self-service."""
    await human.converse(message, ctx, open_conversation)
