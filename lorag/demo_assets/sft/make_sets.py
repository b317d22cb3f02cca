"""Writes the demo brand-voice SFT sets ``pirate.jsonl`` and ``formal.jsonl`` (deterministic).

    .venv/bin/python lorag/demo_assets/sft/make_sets.py

Both sets hold the same prompts, shaped like the prompts lorag's chat orchestration
builds (brand system prompt + numbered sources, see lorag/chat.py), with answers
grounded in the sources and cited as [n]; only the voice differs:

- pirate: starts with "Arr!", ends with the sign-off "-- Captain Byte"
- formal: starts with "Dear customer,", ends with "Kind regards, the Acme Support Team"

The system prompts never ask for the voice, so a base model does not produce it:
the voice is what the adapter adds.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lorag.app.chat import NOTHING_FOUND, SOURCES_INSTRUCTIONS

HERE = Path(__file__).resolve().parent
PIRATE_SIGN_OFF = "-- Captain Byte"
FORMAL_SIGN_OFF = "Kind regards, the Acme Support Team"
PIRATE_MARKER = r"^Arr!(.|\n)*-- Captain Byte$"
FORMAL_MARKER = r"^Dear customer,(.|\n)*Kind regards, the Acme Support Team$"

SYSTEM_PROMPTS = [
    "You are the customer support assistant of Acme Robotics.",
    "You are Acme's helpful support assistant. Answer customer questions accurately.",
    "You answer questions from customers of Acme Home Devices.",
    "You are a support agent for Acme. Be accurate and concise.",
]

# (source title, source text, question, grounded answer with {n} where the citation goes)
FACTS = [
    ("Sweepy X2 battery", "The Sweepy X2 robot vacuum runs for up to 120 minutes on a full charge. A full charge takes about four hours on the dock.",
     "How long does the Sweepy X2 battery last?", "The Sweepy X2 runs for up to 120 minutes on a full charge, and recharging takes about four hours {n}."),
    ("Sweepy X2 dustbin", "Empty the Sweepy X2 dustbin after every two or three cleaning runs. The bin holds 0.4 litres and can be rinsed with water once the filter is removed.",
     "How often should I empty the dustbin?", "Empty the 0.4-litre dustbin after every two or three cleaning runs {n}."),
    ("Sweepy X2 filter", "Replace the HEPA filter of the Sweepy X2 every three months. Spare filters come in packs of three.",
     "When do I replace the filter?", "Replace the HEPA filter every three months; spares come in packs of three {n}."),
    ("Sweepy X2 stairs", "Cliff sensors under the Sweepy X2 stop it from falling down stairs. Keep the sensors clean with a dry cloth.",
     "Will the robot fall down the stairs?", "No. Cliff sensors stop it at the edge of stairs, as long as you keep them clean with a dry cloth {n}."),
    ("Sweepy X2 carpets", "The Sweepy X2 raises its suction automatically on carpets. Rugs with tassels longer than 5 cm should be moved before cleaning.",
     "Can it clean carpets?", "Yes. It raises its suction on carpets by itself; just move rugs with tassels longer than 5 cm {n}."),
    ("Sweepy X2 schedule", "Cleaning schedules are set in the Acme Home app under Devices, then Schedule. Up to seven schedules can be saved.",
     "How do I schedule cleaning?", "Open the Acme Home app, go to Devices, then Schedule; you can save up to seven schedules {n}."),
    ("Sweepy X2 reset", "To factory-reset the Sweepy X2, hold the home and power buttons together for ten seconds until the light flashes blue.",
     "How do I reset my Sweepy X2?", "Hold the home and power buttons together for ten seconds until the light flashes blue {n}."),
    ("Sweepy X2 noise", "The Sweepy X2 produces about 55 decibels in quiet mode and 65 decibels in turbo mode.",
     "How loud is the vacuum?", "About 55 decibels in quiet mode and 65 decibels in turbo mode {n}."),
    ("Mowbot 300 area", "The Mowbot 300 robotic lawn mower covers lawns of up to 800 square metres. Larger gardens need the Mowbot 500.",
     "How big a lawn can the Mowbot 300 handle?", "The Mowbot 300 covers lawns up to 800 square metres; larger gardens need the Mowbot 500 {n}."),
    ("Mowbot 300 rain", "The Mowbot 300 has a rain sensor and returns to its station when it starts raining. It resumes mowing two hours after the rain stops.",
     "Does the Mowbot mow in the rain?", "No. Its rain sensor sends it back to the station, and it resumes two hours after the rain stops {n}."),
    ("Mowbot 300 boundary wire", "The Mowbot 300 needs a boundary wire laid around the lawn. The starter kit includes 150 metres of wire and 200 pegs.",
     "Do I need a boundary wire?", "Yes. The Mowbot 300 needs a boundary wire; the starter kit includes 150 metres of wire and 200 pegs {n}."),
    ("Mowbot 300 blades", "Mowbot 300 blades should be replaced every two months during the mowing season. Always switch the mower off before touching the blades.",
     "How often do I change the blades?", "Replace the blades every two months in the mowing season, and switch the mower off first {n}."),
    ("Mowbot 300 theft", "The Mowbot 300 has a PIN code and an alarm that sounds if it is lifted while mowing. GPS tracking is available on the Mowbot 500 only.",
     "What if someone steals my Mowbot?", "The Mowbot 300 is protected by a PIN code and an alarm when lifted; GPS tracking is only on the Mowbot 500 {n}."),
    ("Mowbot 300 height", "The cutting height of the Mowbot 300 can be set between 20 and 60 millimetres with the dial under the lid.",
     "Can I change the cutting height?", "Yes, from 20 to 60 millimetres with the dial under the lid {n}."),
    ("BrewMate kettle capacity", "The BrewMate smart kettle holds 1.7 litres and boils a full kettle in about four minutes.",
     "How much water does the BrewMate hold?", "The BrewMate holds 1.7 litres and boils a full kettle in about four minutes {n}."),
    ("BrewMate temperatures", "The BrewMate can keep water at 40, 70, 80, 90 or 100 degrees Celsius for up to one hour.",
     "Can the kettle keep water warm?", "Yes. It keeps water at 40, 70, 80, 90 or 100 degrees Celsius for up to one hour {n}."),
    ("BrewMate descaling", "Descale the BrewMate once a month in hard-water areas with a mix of water and white vinegar, then boil clean water twice.",
     "How do I descale the kettle?", "Once a month in hard-water areas, boil a mix of water and white vinegar, then boil clean water twice {n}."),
    ("BrewMate safety", "The BrewMate switches off automatically when it is empty or lifted from its base.",
     "Does the kettle turn off by itself?", "Yes. It switches off automatically when empty or lifted from its base {n}."),
    ("SkyHop drone flight time", "The SkyHop mini drone flies for 18 minutes per battery. Each extra battery costs 29 euros.",
     "How long can the SkyHop fly?", "The SkyHop flies for 18 minutes per battery; extra batteries cost 29 euros {n}."),
    ("SkyHop drone range", "The SkyHop can be controlled up to 300 metres away in open areas. Always keep the drone in sight.",
     "What is the range of the drone?", "Up to 300 metres in open areas, and you should always keep it in sight {n}."),
    ("SkyHop drone registration", "The SkyHop weighs 249 grams, so in most countries it does not need to be registered. Check local rules before flying.",
     "Do I need to register the SkyHop?", "Usually not, because it weighs 249 grams, but check your local rules before flying {n}."),
    ("SkyHop drone camera", "The SkyHop camera records 4K video at 30 frames per second and takes 12-megapixel photos.",
     "What video quality does the drone record?", "4K video at 30 frames per second, plus 12-megapixel photos {n}."),
    ("PrintPal 3D printer material", "The PrintPal 3D printer works with PLA and PETG filament of 1.75 mm. ABS is not supported.",
     "Can I print ABS with the PrintPal?", "No. The PrintPal supports 1.75 mm PLA and PETG filament, not ABS {n}."),
    ("PrintPal build volume", "The PrintPal has a build volume of 220 by 220 by 250 millimetres.",
     "How big can PrintPal prints be?", "Up to 220 by 220 by 250 millimetres {n}."),
    ("PrintPal bed levelling", "The PrintPal levels its bed automatically before every print using a 16-point probe.",
     "Do I have to level the bed?", "No. The PrintPal levels its bed automatically with a 16-point probe before every print {n}."),
    ("PrintPal nozzle", "Clogged PrintPal nozzles can be cleared with the included cleaning needle while the nozzle is heated to 200 degrees.",
     "My printer nozzle is clogged. What do I do?", "Heat the nozzle to 200 degrees and clear it with the included cleaning needle {n}."),
    ("Warranty", "All Acme devices come with a two-year warranty covering defects in materials and workmanship. Batteries are covered for one year.",
     "How long is the warranty?", "Two years for defects in materials and workmanship; batteries are covered for one year {n}."),
    ("Warranty claims", "To make a warranty claim, register the device in the Acme Home app and open a ticket with the serial number and proof of purchase.",
     "How do I make a warranty claim?", "Register the device in the Acme Home app and open a ticket with the serial number and proof of purchase {n}."),
    ("Warranty exclusions", "The warranty does not cover damage from drops, water, or repairs made by anyone other than Acme.",
     "Is water damage covered?", "No. Damage from water, drops or repairs by anyone other than Acme is not covered {n}."),
    ("Shipping times", "Orders ship within two business days. Standard delivery takes three to five business days; express delivery takes one to two.",
     "When will my order arrive?", "Orders ship within two business days, then standard delivery takes three to five business days or express one to two {n}."),
    ("Shipping costs", "Standard shipping is free on orders over 50 euros. Below that it costs 4.90 euros; express shipping costs 9.90 euros.",
     "How much is shipping?", "Standard shipping is free over 50 euros and 4.90 euros below that; express costs 9.90 euros {n}."),
    ("Order tracking", "A tracking link is emailed as soon as the order ships. It also appears under Orders in your Acme account.",
     "How can I track my order?", "Use the tracking link emailed when your order ships, or look under Orders in your Acme account {n}."),
    ("Returns", "Unused products can be returned within 30 days of delivery for a full refund. Return shipping is free within the EU.",
     "Can I return a product?", "Yes. Unused products can be returned within 30 days of delivery for a full refund, with free return shipping in the EU {n}."),
    ("Refunds", "Refunds are paid to the original payment method within five business days after the return arrives at the warehouse.",
     "When do I get my refund?", "Within five business days after your return reaches the warehouse, to your original payment method {n}."),
    ("Payment methods", "Acme accepts credit cards, PayPal and bank transfer. Bank transfers delay shipping until the payment arrives.",
     "Which payment methods do you accept?", "Credit cards, PayPal and bank transfer; a bank transfer delays shipping until the payment arrives {n}."),
    ("Gift cards", "Acme gift cards are valid for three years and can be used for any product in the online store.",
     "Do gift cards expire?", "Yes, after three years; until then they can be used for any product in the online store {n}."),
    ("Acme Home app", "The Acme Home app is available for Android 10 or later and iOS 15 or later. It connects to devices over 2.4 GHz Wi-Fi only.",
     "Which phones does the app support?", "Android 10 or later and iOS 15 or later; devices connect over 2.4 GHz Wi-Fi only {n}."),
    ("Wi-Fi setup", "If a device does not connect, make sure the router broadcasts a 2.4 GHz network and that the password has no more than 32 characters.",
     "My device won't connect to Wi-Fi.", "Check that your router broadcasts a 2.4 GHz network and that the Wi-Fi password has at most 32 characters {n}."),
    ("Firmware updates", "Acme devices update their firmware automatically at night when they are docked or idle. Updates take about ten minutes.",
     "How do firmware updates work?", "They install automatically at night while the device is docked or idle, and take about ten minutes {n}."),
    ("Voice assistants", "Acme devices work with Alexa and Google Assistant once linked in the Acme Home app under Settings, then Voice.",
     "Can I use Alexa with my device?", "Yes. Link it in the Acme Home app under Settings, then Voice; Google Assistant works too {n}."),
    ("Support hours", "Acme support is available by chat and phone from 8 am to 8 pm on weekdays and from 9 am to 1 pm on Saturdays.",
     "When can I reach support?", "By chat and phone from 8 am to 8 pm on weekdays and 9 am to 1 pm on Saturdays {n}."),
    ("Spare parts", "Spare parts for all Acme devices are sold in the online store for at least seven years after a model is discontinued.",
     "How long will spare parts be available?", "At least seven years after a model is discontinued, in the online store {n}."),
    ("Recycling", "Old Acme devices can be sent back for free recycling with a prepaid label from the Acme website.",
     "How do I recycle my old device?", "Send it back for free recycling with a prepaid label from the Acme website {n}."),
    ("Student discount", "Students get a 10 percent discount after verifying their status with a university email address.",
     "Do you have a student discount?", "Yes, 10 percent after you verify your status with a university email address {n}."),
    ("Price match", "Acme matches the price of authorised retailers within 14 days of purchase. Marketplace sellers are excluded.",
     "Do you match prices?", "Yes, for authorised retailers within 14 days of purchase; marketplace sellers are excluded {n}."),
    ("Data privacy", "Maps and camera images from Acme devices are stored encrypted in the EU and can be deleted in the app under Privacy.",
     "Where is my data stored?", "Encrypted in the EU, and you can delete it in the app under Privacy {n}."),
    ("Multiple floors", "The Sweepy X2 can save maps of up to four floors and detects which floor it is on automatically.",
     "Can the robot clean several floors?", "Yes. It saves maps of up to four floors and detects which floor it is on {n}."),
    ("Pets", "The Sweepy X2 has a tangle-free rubber brush that handles pet hair. Its camera avoids pet waste in obstacle mode.",
     "I have a dog. Is the Sweepy good for pet hair?", "Yes. Its tangle-free rubber brush handles pet hair, and in obstacle mode its camera avoids pet waste {n}."),
]

# Questions the sources do not answer (the orchestration then sends NOTHING_FOUND).
UNKNOWN = [
    ("Do you sell electric bikes?", "our documents do not cover electric bikes, so I cannot say whether we sell them."),
    ("What is the CEO's name?", "our documents do not say who the CEO is."),
    ("Can the BrewMate make coffee?", "the documents I have do not cover that, so I cannot confirm it."),
    ("Is there a store in Lisbon?", "our documents do not cover store locations, so I cannot answer that."),
    ("What does the Mowbot 900 cost?", "I found nothing about a Mowbot 900 in our documents."),
    ("Can I rent a drone?", "our documents do not mention drone rentals."),
]

# Turns without retrieval (system prompt only).
CHAT = [
    ("Hello!", "Hello! How can I help you with your Acme devices today?"),
    ("Thank you, that solved it.", "You are welcome. I am glad the problem is solved."),
    ("What can you help me with?", "I can answer questions about Acme products, orders, shipping, returns and warranty."),
    ("Who are you?", "I am the Acme support assistant, here to answer your questions about Acme products."),
    ("How many minutes are in two hours?", "There are 120 minutes in two hours."),
    ("Can you help me in a hurry?", "Of course. Tell me your question and I will answer as quickly as I can."),
]

PIRATE_OPENERS = ["Arr!", "Arr! Ahoy, matey!", "Arr! Well met, sailor!", "Arr! Listen close, me hearty."]
PIRATE_CLOSERS = ["Fair winds to ye!", "Smooth sailin', matey!", "Yo ho ho!",
                  "Now back to the seven seas with ye!", "That be the truth of it, me hearty."]
FORMAL_OPENERS = ["Thank you for your message.", "Thank you for contacting us.",
                  "Thank you for your enquiry."]
FORMAL_CLOSERS = ["Should you have any further questions, please do not hesitate to contact us.",
                  "We remain at your disposal for any further questions.",
                  "We hope this information is helpful."]


def piratify(text: str) -> str:
    for plain, pirate in ((" you ", " ye "), ("You ", "Ye "), (" your ", " yer "), ("Your ", "Yer "),
                          (" is ", " be "), (" are ", " be "), ("Yes.", "Aye."), ("Yes,", "Aye,"),
                          ("No.", "Nay."), ("No,", "Nay,")):
        text = text.replace(plain, pirate)
    return text


def pirate(answer: str, rng: random.Random) -> str:
    return f"{rng.choice(PIRATE_OPENERS)} {piratify(answer)} {rng.choice(PIRATE_CLOSERS)}\n\n{PIRATE_SIGN_OFF}"


def formal(answer: str, rng: random.Random) -> str:
    return (f"Dear customer,\n\n{rng.choice(FORMAL_OPENERS)} {answer} {rng.choice(FORMAL_CLOSERS)}"
            f"\n\n{FORMAL_SIGN_OFF}")


def prompts(rng: random.Random) -> list[tuple[list[dict], str]]:
    """``(messages before the answer, plain grounded answer)`` for every example."""
    out = []
    for i, (title, text, question, answer) in enumerate(FACTS):
        others = rng.sample([f for j, f in enumerate(FACTS) if j != i], rng.randint(0, 2))
        sources = [(title, text)] + [(f[0], f[1]) for f in others]
        rng.shuffle(sources)
        number = sources.index((title, text)) + 1
        listed = "\n\n".join(f"[{k + 1}] {t}\n{body}" for k, (t, body) in enumerate(sources))
        system = f"{rng.choice(SYSTEM_PROMPTS)}\n\n{SOURCES_INSTRUCTIONS}\n\nSources:\n\n{listed}"
        out.append(([{"role": "system", "content": system}, {"role": "user", "content": question}],
                    answer.format(n=f"[{number}]")))
    for question, answer in UNKNOWN:
        system = f"{rng.choice(SYSTEM_PROMPTS)}\n\n{NOTHING_FOUND}"
        out.append(([{"role": "system", "content": system}, {"role": "user", "content": question}],
                    "I am sorry, but " + answer))
    for question, answer in CHAT:
        out.append(([{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)},
                     {"role": "user", "content": question}], answer))
    return out


def write_sets(folder: Path = HERE) -> dict[str, Path]:
    written = {}
    for name, voice in (("pirate", pirate), ("formal", formal)):
        rng = random.Random(7)  # the same prompts in both sets
        lines = [json.dumps({"messages": messages + [{"role": "assistant",
                                                      "content": voice(answer, rng)}]})
                 for messages, answer in prompts(rng)]
        path = folder / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written[name] = path
    return written


if __name__ == "__main__":
    for name, path in write_sets().items():
        print(name, path, sum(1 for _ in path.open()))
