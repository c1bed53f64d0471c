"""Curate the built-in retention suites (`mixsd/evaluate/data/*.jsonl`) against the base model.

Protocol (decided before any training, never revisited toward a method's result): a fixed,
deterministic candidate pool per suite (the tables below; arithmetic from a seeded generator) is
answered greedily by the base SmolLM2-135M-Instruct with the demo's evaluate settings (the chat
template through `mixsd.data.templates.render_user_turn`, `mixsd.evaluate.checkpoints.
greedy_answers`, 32 new tokens, batch 64, CPU) in bfloat16 (what `dtype: auto` picks on a bf16
CPU) and in float32; an item is kept when `mixsd.answers.is_correct(text, gold, ("contains",))`
holds in BOTH, so the packaged files do not depend on the dtype. No base-wrong item is kept.

    PYTHONPATH=$PWD python scripts/curate_suites.py [--model data/models/smollm2] \\
        [--scratch /tmp/suites] [--write mixsd/evaluate/data]

Writes SCRATCH/candidates.jsonl (the pool), SCRATCH/answers-<dtype>.jsonl (a cache: prompts
already answered are not run again), SCRATCH/summary.json (per suite: candidates, base-correct in
each dtype, kept) and, with --write, DIR/<suite>.jsonl (the kept items, in pool order).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import unicodedata
from pathlib import Path

from mixsd.answers import is_correct

SUITES = ("world", "language", "arithmetic", "commonsense", "translation")
DTYPES = ("bfloat16", "float32")

# Golds are scored by whole-word `contains`, so none is a frequent word a wrong answer would hold
# ("a", "one", "was", "light", "May"), nor a word with two readings ("run": noun or verb).
# ---- the candidate tables ------------------------------------------------------------------------
CAPITALS = """France:Paris; Japan:Tokyo; Germany:Berlin; the United Kingdom:London; Russia:Moscow;
China:Beijing; Egypt:Cairo; Greece:Athens; Canada:Ottawa; Australia:Canberra; India:New Delhi;
Ireland:Dublin; Norway:Oslo; Sweden:Stockholm; Finland:Helsinki; Poland:Warsaw; Austria:Vienna;
Hungary:Budapest; the Czech Republic:Prague; Iran:Tehran; Iraq:Baghdad; Saudi Arabia:Riyadh;
Kenya:Nairobi; Nigeria:Abuja; South Korea:Seoul; North Korea:Pyongyang; Thailand:Bangkok;
Indonesia:Jakarta; the Philippines:Manila; Peru:Lima; Chile:Santiago; Cuba:Havana;
the Netherlands:Amsterdam; Switzerland:Bern; Romania:Bucharest; Scotland:Edinburgh;
Pakistan:Islamabad; Afghanistan:Kabul; Ethiopia:Addis Ababa; Malaysia:Kuala Lumpur;
New Zealand:Wellington; Bulgaria:Sofia; Spain:Madrid; Italy:Rome; Portugal:Lisbon;
Belgium:Brussels; Denmark:Copenhagen; Iceland:Reykjavik; Turkey:Ankara; Lebanon:Beirut;
Syria:Damascus; Jordan:Amman; Mexico:Mexico City; Argentina:Buenos Aires; Venezuela:Caracas;
Ecuador:Quito; Uruguay:Montevideo; Vietnam:Hanoi; Cambodia:Phnom Penh; Laos:Vientiane;
Bangladesh:Dhaka; Nepal:Kathmandu; Mongolia:Ulaanbaatar; Uzbekistan:Tashkent; Belarus:Minsk;
Lithuania:Vilnius; Latvia:Riga; Estonia:Tallinn; Serbia:Belgrade; Croatia:Zagreb;
Slovenia:Ljubljana; Slovakia:Bratislava; Albania:Tirana; Morocco:Rabat; Algeria:Algiers;
Libya:Tripoli; Sudan:Khartoum; Ghana:Accra; Senegal:Dakar; Uganda:Kampala; Zimbabwe:Harare;
Zambia:Lusaka; Angola:Luanda; Madagascar:Antananarivo; Jamaica:Kingston; Qatar:Doha;
the United Arab Emirates:Abu Dhabi; Oman:Muscat; Taiwan:Taipei; Wales:Cardiff;
Northern Ireland:Belfast; Cyprus:Nicosia; Malta:Valletta; Armenia:Yerevan; Azerbaijan:Baku;
Nicaragua:Managua; Honduras:Tegucigalpa; the Dominican Republic:Santo Domingo;
Haiti:Port-au-Prince; Georgia (the country):Tbilisi; the United States:Washington;
California:Sacramento; Texas:Austin; New York State:Albany; Florida:Tallahassee;
Illinois:Springfield; Massachusetts:Boston; Georgia (the US state):Atlanta; Colorado:Denver;
Arizona:Phoenix; Hawaii:Honolulu; Washington State:Olympia; Ohio:Columbus"""

# (question, gold): world knowledge beyond capitals
WORLD = """Which planet is known as the Red Planet?|Mars
What is the chemical symbol for water?|H2O
Who wrote Romeo and Juliet?|Shakespeare
What is the largest ocean on Earth?|Pacific
What is the tallest mountain in the world?|Everest
What is the longest river in Africa?|Nile
What gas do plants absorb from the air?|carbon dioxide
Who painted the Mona Lisa?|Leonardo da Vinci
On which continent is Egypt?|Africa
What language is spoken in Brazil?|Portuguese
What is the currency of Japan?|yen
What is the largest planet in our solar system?|Jupiter
Which planet is closest to the Sun?|Mercury
Which planet is famous for its rings?|Saturn
What is the hottest planet in our solar system?|Venus
What is the natural satellite of the Earth called?|Moon
What is the largest hot desert in the world?|Sahara
What is the largest country in the world by area?|Russia
What is the longest river in South America?|Amazon
Who wrote Hamlet?|Shakespeare
Who discovered penicillin?|Fleming
Who developed the theory of relativity?|Einstein
Who painted The Starry Night?|Van Gogh
Who was the first president of the United States?|Washington
Who invented the telephone?|Bell
Who invented the light bulb?|Edison
What is the chemical symbol for gold?|Au
What is the chemical symbol for iron?|Fe
What is the chemical symbol for sodium?|Na
What is the hardest natural substance?|diamond
What is the largest mammal in the world?|blue whale
What is the fastest land animal?|cheetah
What gas do humans need to breathe to live?|oxygen
What is the largest organ of the human body?|skin
What is the currency of the United Kingdom?|pound
What is the currency of the United States?|dollar
What is the currency of Germany?|euro
What is the currency of India?|rupee
What is the currency of Russia?|ruble
What is the currency of Mexico?|peso
What language is spoken in Mexico?|Spanish
What language is spoken in Italy?|Italian
What language is spoken in the Netherlands?|Dutch
What language is mainly spoken in Egypt?|Arabic
What language is spoken in Japan?|Japanese
What language is spoken in Argentina?|Spanish
What language is spoken in Austria?|German
On which continent is Kenya?|Africa
On which continent is Brazil?|South America
On which continent is France?|Europe
On which continent is China?|Asia
On which continent is Argentina?|South America
In which city is the Eiffel Tower?|Paris
In which city is the Colosseum?|Rome
In which city is Big Ben?|London
In which city is the Statue of Liberty?|New York
In which country is the Taj Mahal?|India
In which country is the Great Wall?|China
In which country are the pyramids of Giza?|Egypt
In which country is Machu Picchu?|Peru
In which city is the Kremlin?|Moscow
Who wrote Pride and Prejudice?|Austen
Who wrote the novel 1984?|Orwell
Who wrote the Harry Potter books?|Rowling
Who wrote the Odyssey?|Homer
Who wrote Don Quixote?|Cervantes
Who wrote War and Peace?|Tolstoy
Who wrote On the Origin of Species?|Darwin
Who composed the Moonlight Sonata?|Beethoven
Who composed The Magic Flute?|Mozart
What is the powerhouse of the cell?|mitochondria
What is the center of an atom called?|nucleus
What force pulls objects toward the Earth?|gravity
What organ pumps blood through the body?|heart
What process do plants use to make food from sunlight?|photosynthesis
What gas do humans breathe out?|carbon dioxide
Who was the first person to walk on the Moon?|Armstrong
In which year did World War II end?|1945
In which year did Columbus first reach the Americas?|1492
Who was the first woman to win a Nobel Prize?|Curie
Who painted the ceiling of the Sistine Chapel?|Michelangelo
Who wrote The Communist Manifesto with Friedrich Engels?|Marx
Who formulated the laws of motion and universal gravitation?|Newton
Who created the periodic table of the elements?|Mendeleev
Who is the Greek god of the sea?|Poseidon
Who is the king of the Greek gods?|Zeus
Who is the Norse god of thunder?|Thor
What is the second largest ocean on Earth?|Atlantic
What is the largest continent?|Asia
What is the largest island in the world?|Greenland
In which country is Mount Kilimanjaro?|Tanzania
In which country is the city of Sydney?|Australia
In which country is the city of Toronto?|Canada
In which country is the city of Barcelona?|Spain
In which country is the city of Munich?|Germany
In which country is the city of Milan?|Italy
In which country is the city of Mumbai?|India
In which country is the city of Istanbul?|Turkey
In which country is the city of Rio de Janeiro?|Brazil
In which country is the city of Shanghai?|China
In which country is the city of Osaka?|Japan
In which country is the city of Lyon?|France
In which country is the city of Venice?|Italy
In which country is the city of Casablanca?|Morocco
In which country is the city of Melbourne?|Australia
In which country is the city of Vancouver?|Canada
How many players are on the field for one soccer team?|11
What is the boiling point of water in degrees Celsius?|100
What is the smallest planet in our solar system?|Mercury
What is the largest bone in the human body?|femur
What is the main gas in the air we breathe?|nitrogen
What is the capital city of the state of Alaska?|Juneau
What metal is liquid at room temperature?|mercury
What is the freezing point of water in degrees Fahrenheit?|32
Who was the Greek goddess of wisdom?|Athena
Which ancient civilization built the pyramids?|Egyptians
Who discovered gravity when an apple fell?|Newton
Which country gave the Statue of Liberty to the United States?|France
What is the name of the galaxy we live in?|Milky Way
What is the currency of China?|yuan
What is the largest state of the United States by area?|Alaska"""

OPPOSITES = """hot:cold up:down big:small day:night happy:sad fast:slow black:white light:dark
left:right good:bad rich:poor tall:short empty:full wet:dry early:late strong:weak loud:quiet
win:lose first:last push:pull buy:sell love:hate thick:thin heavy:light before:after
above:below north:south east:west inside:outside alive:dead true:false war:peace
friend:enemy question:answer give:take laugh:cry enter:exit sweet:sour cheap:expensive
clean:dirty hard:soft young:old open:closed remember:forget arrive:depart"""

PLURALS = """mouse:mice child:children man:men woman:women foot:feet tooth:teeth goose:geese
person:people ox:oxen cactus:cacti leaf:leaves knife:knives wife:wives wolf:wolves half:halves
box:boxes city:cities baby:babies bus:buses potato:potatoes hero:heroes die:dice louse:lice
fungus:fungi crisis:crises"""

PAST = """go:went eat:ate run:ran see:saw write:wrote take:took give:gave swim:swam sing:sang
drink:drank fly:flew buy:bought think:thought bring:brought teach:taught catch:caught
speak:spoke break:broke choose:chose drive:drove ride:rode fall:fell feel:felt keep:kept
sleep:slept find:found sit:sat stand:stood win:won begin:began know:knew grow:grew throw:threw
draw:drew wear:wore tell:told sell:sold"""

MONTHS = (
    "January February March April May June July August September October November December"
).split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

LANGUAGE = """What is the comparative form of good?|better
What is the comparative form of bad?|worse
What is the superlative form of good?|best
What is the superlative form of bad?|worst
What color is the sky on a clear day?|blue
What color is snow?|white
What color is grass?|green
What color do you get when you mix blue and yellow?|green
What color do you get when you mix red and white?|pink
What color do you get when you mix red and yellow?|orange
What color do you get when you mix red and blue?|purple
How many hours are in a day?|24
How many days are in a week?|seven
How many months are in a year?|twelve
How many minutes are in an hour?|60
How many seconds are in a minute?|60
How many days are in a year?|365
What is a word that rhymes with cat and names a flying mammal?|bat
What do you call a word that means the same as another word?|synonym
What do you call a word that means the opposite of another word?|antonym
What part of speech is the word quickly?|adverb
What part of speech is the word happy?|adjective"""

COMMONSENSE = """What do bees make?|honey
What do cows give us to drink?|milk
What do hens lay?|eggs
What do you use to cut paper?|scissors
What do you wear on your feet?|shoes
What do you wear on your head to keep the sun off?|hat
What do you wear on your hands in winter?|gloves
What do you use to unlock a door?|key
What do you sleep on at night?|bed
What do you use to brush your teeth?|toothbrush
What do you use to wash your hands?|soap
What falls from the sky in winter when it is very cold?|snow
What do you use to dry yourself after a shower?|towel
What do you call frozen water?|ice
Where do birds lay their eggs?|nest
Which animal says moo?|cow
Which animal says woof?|dog
Which animal says meow?|cat
Which animal says quack?|duck
Which animal says oink?|pig
Which animal says neigh?|horse
Which animal says baa?|sheep
Where do you go to borrow books?|library
Where do you go to catch a plane?|airport
Where do children go to learn?|school
Where do you go when you are very sick and need a doctor?|hospital
Where do you buy bread and cakes?|bakery
What do you use to eat soup?|spoon
What color is a ripe banana?|yellow
What color are most leaves in summer?|green
What color is a fire truck?|red
What color is coal?|black
What does a thermometer measure?|temperature
What does a scale measure?|weight
What do you use to take a photo?|camera
Which musical instrument has black and white keys?|piano
What is the first meal of the day called?|breakfast
What is the meal eaten at midday called?|lunch
Which season comes after winter?|spring
What is the hottest season of the year?|summer
What is the coldest season of the year?|winter
Who puts out fires?|firefighters
Who flies an airplane?|pilot
Who treats sick people in a hospital?|doctor
Who teaches students at school?|teacher
Who takes care of your teeth?|dentist
Who grows crops on a farm?|farmer
Which animal is known as the king of the jungle?|lion
Which animal has a long trunk?|elephant
Which animal has a very long neck?|giraffe
Which animal has black and white stripes?|zebra
Which animal hops and carries its baby in a pouch?|kangaroo
What creature spins a web to catch flies?|spider
What do caterpillars turn into?|butterflies
What is a house made of ice blocks called?|igloo
What do you use to sweep the floor?|broom
What do you plant in the ground to grow a flower?|seed
What do you use to look at the stars?|telescope
What do you use to see very tiny things like cells?|microscope
Who fixes cars?|mechanic
What kind of boat can travel underwater?|submarine
What do you use to hit a nail into wood?|hammer
What do you light on a birthday cake?|candles
What do you use to climb up to a high shelf?|ladder
What is the hard outer covering of an egg called?|shell
What is the yellow part of an egg called?|yolk
Which direction does a compass needle point to?|north
In which direction does the sun rise?|east
In which direction does the sun set?|west
What is a dry place with lots of sand and little rain called?|desert
What is a baby frog called?|tadpole
What is a baby dog called?|puppy
What is a baby cat called?|kitten
What is a baby cow called?|calf
What is a baby sheep called?|lamb
What is a baby horse called?|foal
What is a baby bear called?|cub
What is a baby duck called?|duckling
Which body part do you use to see?|eyes
Which body part do you use to hear?|ears
Which body part do you use to smell?|nose
Which organ do you use to think?|brain
Which organs do you use to breathe?|lungs
What do you call the water that falls from clouds?|rain
What do you put on a letter before you mail it?|stamp
What do you open when it rains to stay dry?|umbrella
What do fish use to breathe underwater?|gills
What do you use to write on a blackboard?|chalk
Which fruit is used to make wine?|grapes
What is ice made of?|water
Which fruit keeps the doctor away if you eat one a day?|apple
What do you call a group of sheep?|flock
What do monkeys love to eat?|bananas
What do you use to carry water from a well?|bucket
What do squirrels collect and eat?|nuts
What do you use to hold up your trousers?|belt
Which animal is known for being slow and carrying a shell?|turtle
What do you call the person who drives a bus?|driver
What do you use to paint a picture?|brush
What is the opposite season to summer?|winter
What do you call the top of a mountain?|peak
What do you wear on your wrist to tell the time?|watch
What do you put on your bread to make it sweet?|jam
Where do bees live?|hive
What gives milk, says moo and eats grass?|cow
What do you call a person who cooks in a restaurant?|chef
What do you call a doctor for animals?|veterinarian
Where do you keep money safe and earn interest?|bank
What covers the body of a bird?|feathers
What covers the body of a fish?|scales
What do spiders have eight of?|legs"""

# English word: (Spanish, French, German), "-" where it would be ambiguous or the same word
WORDS = """dog:perro,chien,Hund cat:gato,chat,Katze house:casa,maison,Haus water:agua,eau,Wasser
book:libro,livre,Buch sun:sol,soleil,Sonne moon:luna,lune,Mond red:rojo,rouge,rot
green:verde,vert,grün blue:azul,bleu,blau black:negro,noir,schwarz white:blanco,blanc,weiß
bread:pan,pain,Brot milk:leche,lait,Milch apple:manzana,pomme,Apfel man:hombre,homme,Mann
woman:mujer,femme,Frau friend:amigo,ami,Freund school:escuela,école,Schule city:ciudad,ville,Stadt
day:día,jour,Tag night:noche,nuit,Nacht bird:pájaro,oiseau,Vogel fish:pez,poisson,Fisch
tree:árbol,arbre,Baum flower:flor,fleur,Blume fire:fuego,feu,Feuer king:rey,roi,König
queen:reina,reine,Königin father:padre,père,Vater mother:madre,mère,Mutter
brother:hermano,frère,Bruder sister:hermana,sœur,Schwester car:coche,voiture,Auto
heart:corazón,cœur,Herz head:cabeza,tête,Kopf summer:verano,été,Sommer winter:invierno,hiver,-
cheese:queso,fromage,Käse wine:vino,vin,Wein horse:caballo,cheval,Pferd hello:hola,bonjour,hallo
thank:gracias,merci,danke child:niño,enfant,Kind two:dos,deux,zwei
three:tres,trois,drei"""

# English:language:word; asked English -> the other language
TO_FOREIGN = """hello:Spanish:hola; thank you:Spanish:gracias; dog:Spanish:perro; cat:Spanish:gato;
water:Spanish:agua; hello:French:bonjour; thank you:French:merci; goodbye:French:au revoir;
hello:German:hallo; thank you:German:danke; dog:German:Hund; water:German:Wasser;
hello:Italian:ciao; thank you:Italian:grazie; yes:Spanish:sí; yes:German:ja; yes:French:oui;
friend:Spanish:amigo; good morning:Spanish:buenos días; please:French:s'il vous plaît"""

LANGS = ("Spanish", "French", "German")
CODES = {"Spanish": "es", "French": "fr", "German": "de", "Italian": "it"}


# ---- the candidate pool --------------------------------------------------------------------------
def slug(text: str) -> str:
    """An id fragment: lower-case ASCII letters and digits joined by dashes ("école" -> "ecole")."""
    ascii_text = unicodedata.normalize("NFKD", text.replace("ß", "ss").replace("œ", "oe"))
    ascii_text = ascii_text.encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.casefold()).strip("-")


def item(suite: str, rid: str, prompt: str, answer: str, reference: str) -> dict:
    return {"suite": suite, "id": rid, "prompt": prompt, "answer": answer, "reference": reference}


def answered(question: str, gold: str) -> str:
    """The reference sentence of a free-form question."""
    return f'The answer to "{question}" is {gold}.'


def pairs(table: str) -> list[tuple[str, str]]:
    """`a:b a:b ...` (one-word entries, whitespace-separated) -> [(a, b)]."""
    return [tuple(p.split(":")) for p in table.split()]


def entries(table: str) -> list[list[str]]:
    """`a:b; a:b; ...` (entries may hold spaces) -> [[a, b]]."""
    return [e.strip().split(":") for e in " ".join(table.split()).split(";")]


def lines(table: str) -> list[tuple[str, str]]:
    return [tuple(line.split("|")) for line in table.splitlines()]


def world() -> list[dict]:
    out = []
    for country, city in entries(CAPITALS):
        name = country.split(" (")[0]
        out.append(
            item(
                "world",
                f"capital-{slug(country)}",
                f"What is the capital of {country}?",
                city,
                f"The capital of {name} is {city}.",
            )
        )
    for question, gold in lines(WORLD):
        out.append(
            item(
                "world",
                f"fact-{slug(question)[:48]}",
                question,
                gold,
                answered(question, gold),
            )
        )
    return out


def language() -> list[dict]:
    out = []
    for word, opposite in pairs(OPPOSITES):
        out.append(
            item(
                "language",
                f"opposite-{word}",
                f"What is the opposite of {word}?",
                opposite,
                f"The opposite of {word} is {opposite}.",
            )
        )
    for word, plural in pairs(PLURALS):
        out.append(
            item(
                "language",
                f"plural-{word}",
                f"What is the plural of {word}?",
                plural,
                f"The plural of {word} is {plural}.",
            )
        )
    for verb, past in pairs(PAST):
        out.append(
            item(
                "language",
                f"past-{verb}",
                f"What is the past tense of {verb}?",
                past,
                f"The past tense of {verb} is {past}.",
            )
        )
    for names, unit in ((MONTHS, "month"), (DAYS, "day")):
        for i, name in enumerate(names):
            after = names[(i + 1) % len(names)]
            if after != "May":  # "may" is a frequent verb: a wrong answer would contain it
                out.append(
                    item(
                        "language",
                        f"after-{slug(name)}",
                        f"Which {unit} comes after {name}?",
                        after,
                        f"{after} comes after {name}.",
                    )
                )
    for question, gold in lines(LANGUAGE):
        out.append(
            item(
                "language",
                f"word-{slug(question)[:48]}",
                question,
                gold,
                answered(question, gold),
            )
        )
    return out


def arithmetic(seed: int = 21) -> list[dict]:
    """Sums, differences and products of small numbers, drawn by a seeded generator; the gold is
    computed, never a number of the prompt."""
    rng = random.Random(seed)
    out, seen = [], set()
    draws = [("+", 2, 60, 90), ("-", 2, 60, 60), ("x", 2, 12, 50)]
    for op, lo, hi, n in draws:
        while sum(1 for r in out if f" {op} " in r["prompt"]) < n:
            a, b = rng.randint(lo, hi), rng.randint(lo, hi)
            if op == "-":
                a, b = max(a, b), min(a, b)
            gold = {"+": a + b, "-": a - b, "x": a * b}[op]
            if (a, op, b) in seen or str(gold) in (str(a), str(b)) or gold == 0:
                continue
            seen.add((a, op, b))
            name = {"+": "plus", "-": "minus", "x": "times"}[op]
            out.append(
                item(
                    "arithmetic",
                    f"{name}-{a}-{b}",
                    f"What is {a} {op} {b}?",
                    str(gold),
                    f"{a} {op} {b} = {gold}.",
                )
            )
    return out


def commonsense() -> list[dict]:
    return [
        item("commonsense", f"cs-{slug(q)[:48]}", q, gold, answered(q, gold))
        for q, gold in lines(COMMONSENSE)
    ]


def translation() -> list[dict]:
    out = []
    for entry in WORDS.split():
        english, words = entry.split(":")
        for lang, word in zip(LANGS, words.split(","), strict=True):
            if word == "-":
                continue
            out.append(
                item(
                    "translation",
                    f"{CODES[lang]}-en-{slug(word)}",
                    f"What does the {lang} word '{word}' mean in English?",
                    english,
                    f"The {lang} word '{word}' means '{english}' in English.",
                )
            )
    for english, lang, word in entries(TO_FOREIGN):
        out.append(
            item(
                "translation",
                f"en-{CODES[lang]}-{slug(english)}",
                f"How do you say '{english}' in {lang}?",
                word,
                f"In {lang}, '{english}' is '{word}'.",
            )
        )
    return out


def candidates() -> list[dict]:
    """The whole pool, suite by suite; each item checked: unique id, gold not in the prompt,
    the reference answers it."""
    pool = world() + language() + arithmetic() + commonsense() + translation()
    ids = [r["id"] for r in pool]
    twice = {i for i in ids if ids.count(i) > 1}
    assert not twice, f"duplicate ids: {sorted(twice)}"
    for r in pool:
        assert not is_correct(r["prompt"], r["answer"], ("contains",)), r
        assert is_correct(r["reference"], r["answer"], ("contains",)), r
    return pool


# ---- running the base ------------------------------------------------------------------------
def answer_all(model: str, prompts: list[str], dtype: str, cache: Path) -> dict[str, str]:
    """`{prompt: greedy answer}` in `dtype`, through evaluate's own path; cached in `cache`."""
    done = {}
    if cache.is_file():
        done = {
            row["prompt"]: row["output"]
            for row in map(json.loads, cache.read_text(encoding="utf-8").splitlines())
        }
    todo = [p for p in dict.fromkeys(prompts) if p not in done]
    if todo:
        from mixsd.data.models import load_tokenizer
        from mixsd.data.templates import render_user_turn
        from mixsd.evaluate.checkpoints import greedy_answers

        tok = load_tokenizer(model)
        ids = [render_user_turn(tok, p) for p in todo]
        texts = greedy_answers(model, ids, 32, 64, "cpu", dtype)
        with cache.open("a", encoding="utf-8") as f:
            for p, t in zip(todo, texts, strict=True):
                f.write(json.dumps({"prompt": p, "output": t}, ensure_ascii=False) + "\n")
                done[p] = t
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="data/models/smollm2")
    ap.add_argument("--scratch", default="/tmp/suites")
    ap.add_argument("--write", default=None, help="dir for the kept <suite>.jsonl files")
    args = ap.parse_args()
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    pool = candidates()
    _write(scratch / "candidates.jsonl", pool, keep_suite=True)
    prompts = [r["prompt"] for r in pool]
    answers = {
        d: answer_all(args.model, prompts, d, scratch / f"answers-{d}.jsonl") for d in DTYPES
    }
    summary, kept = {}, {s: [] for s in SUITES}
    for suite in SUITES:
        rows = [r for r in pool if r["suite"] == suite]
        ok = {
            d: [is_correct(answers[d][r["prompt"]], r["answer"], ("contains",)) for r in rows]
            for d in DTYPES
        }
        kept[suite] = [r for r, *flags in zip(rows, *ok.values(), strict=True) if all(flags)]
        summary[suite] = {
            "candidates": len(rows),
            **{f"correct_{d}": sum(ok[d]) for d in DTYPES},
            "kept": len(kept[suite]),
        }
    (scratch / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=1))
    if args.write:
        for suite, rows in kept.items():
            _write(Path(args.write) / f"{suite}.jsonl", rows, keep_suite=False)


def _write(path: Path, rows: list[dict], keep_suite: bool) -> None:
    text = "".join(
        json.dumps({k: v for k, v in r.items() if keep_suite or k != "suite"}, ensure_ascii=False)
        + "\n"
        for r in rows
    )
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
