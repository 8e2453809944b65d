"""Real speech for the voice-embedding tests and benchmark, rendered reproducibly from Debian packages.

Every voice here is a recording of one real person, so "same voice" means "same speaker":

- Festival voices (``festvox-*``) and flite's built-in voices are diphone, unit-selection or HTS voices
  built from one speaker's studio recordings. They read any text, so each voice can say several different
  sentences; sentences held apart from the enrolment are what a fair speaker test needs.
- KLettres (``klettres-data``) holds native speakers reading the letters and syllables of twenty
  alphabets. A "sentence" of such a voice is a disjoint group of those recordings strung together, so two
  sentence numbers of one voice never share a recording.

espeak-ng is deliberately absent: its formant voices are rule-generated, not recorded from anyone.

Festival can also sing (its ``singing`` mode follows a score of notes and beats), which gives a song in a
speaker's voice that shares no audio with that speaker's spoken renders: ``render_song``.

Renders are cached as 16 kHz mono 16-bit WAV under names that hash everything the render depends on, so a
second run costs nothing and a change of text or method never reuses a stale file.

CLI: ``python -m media.samples.speech DEST [--sentences N] [--voice NAME ...] [--song]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ = 16_000
# Bump when the rendering method changes: it is part of every cache key.
RENDER_VERSION = "1"
DEFAULT_SENTENCE_COUNT = 4
# Recorded (KLettres) voices: every recording goes to exactly one of this many groups, whatever the
# sentence numbers asked for, so a group's content never depends on the request.
RECORDED_GROUP_COUNT = 6
RECORDED_MAX_DURATION_S = 7.0
_RECORDED_GAP_S = 0.12
_TRIM_BELOW_PEAK_DB = 35.0
_RENDER_TIMEOUT_S = 120.0

KLETTRES_ROOT = Path("/usr/share/klettres")

SYSTEM_PACKAGES = (
    "festival",
    "flite",
    "klettres-data",
    "festvox-kallpc16k",
    "festvox-kdlpc16k",
    "festvox-us-slt-hts",
    "festvox-ca-ona-hts",
    "festvox-czech-dita",
    "festvox-czech-krb",
    "festvox-czech-machac",
    "festvox-czech-ph",
    "festvox-italp16k",
    "festvox-itapc16k",
    "festvox-ru",
    "festvox-suopuhe-lj",
    "festvox-suopuhe-mv",
)


class SpeechRenderError(RuntimeError):
    """A voice could not be rendered (missing synthesiser, failed synthesis, no recordings)."""


@dataclass(frozen=True)
class SpeechVoice:
    """One real speaker and how to make it talk.

    ``engine`` is "festival", "flite" or "klettres"; ``engine_voice`` is the Festival voice function
    (without ``voice_``), the flite voice name, or the KLettres language folder.
    """

    name: str
    engine: str
    engine_voice: str
    language: str
    description: str


VOICES: tuple[SpeechVoice, ...] = (
    SpeechVoice("festival-kal", "festival", "kal_diphone", "en", "US English male (CMU kal)"),
    SpeechVoice("festival-ked", "festival", "ked_diphone", "en", "US English male (CMU ked)"),
    SpeechVoice("festival-slt", "festival", "cmu_us_slt_arctic_hts", "en", "US English female (CMU slt)"),
    SpeechVoice("festival-ona", "festival", "upc_ca_ona_hts", "ca", "Catalan female (UPC ona)"),
    SpeechVoice("festival-dita", "festival", "czech_dita", "cs", "Czech female (dita)"),
    SpeechVoice("festival-krb", "festival", "czech_krb", "cs", "Czech child male (krb)"),
    SpeechVoice("festival-machac", "festival", "czech_machac", "cs", "Czech male (machac)"),
    SpeechVoice("festival-ph", "festival", "czech_ph", "cs", "Czech male (ph)"),
    SpeechVoice("festival-lp", "festival", "lp_diphone", "it", "Italian female (lp)"),
    SpeechVoice("festival-pc", "festival", "pc_diphone", "it", "Italian male (pc)"),
    SpeechVoice("festival-nsh", "festival", "msu_ru_nsh_clunits", "ru", "Russian male (MSU nsh)"),
    SpeechVoice("festival-lj", "festival", "suo_fi_lj_diphone", "fi", "Finnish female (lj)"),
    SpeechVoice("festival-mv", "festival", "hy_fi_mv_diphone", "fi", "Finnish male (mv)"),
    # flite's kal and slt are the same people as Festival's kal and slt: only its other speakers are listed.
    SpeechVoice("flite-awb", "flite", "awb", "en", "Scottish English male (CMU awb)"),
    SpeechVoice("flite-rms", "flite", "rms", "en", "US English male (CMU rms)"),
    *(
        SpeechVoice(f"klettres-{folder.lower().replace('_', '-')}", "klettres", folder, folder, description)
        for folder, description in (
            ("ar", "Arabic letters, child"),
            ("cs", "Czech letters and syllables"),
            ("da", "Danish letters and syllables"),
            ("de", "German letters and syllables"),
            ("en", "English letters and syllables"),
            ("en_GB", "British English letters and syllables"),
            ("es", "Spanish letters and syllables"),
            ("fr", "French letters and syllables"),
            ("he", "Hebrew letters and syllables"),
            ("hu", "Hungarian letters and syllables"),
            ("it", "Italian letters and syllables"),
            ("lt", "Lithuanian letters and syllables"),
            ("ml", "Malayalam letters and syllables"),
            ("nb", "Norwegian Bokmal letters"),
            ("nds", "Low German letters and syllables"),
            ("nl", "Dutch letters and syllables"),
            ("pt_BR", "Brazilian Portuguese letters and syllables"),
            ("ru", "Russian letters and syllables"),
            ("tn", "Setswana letters and syllables"),
            ("uk", "Ukrainian letters and syllables"),
        )
    ),
)
VOICES_BY_NAME = {voice.name: voice for voice in VOICES}

# Festival voices read their text in the encoding of their language's lexicon.
_TEXT_ENCODINGS = {
    "cs": "iso-8859-2",
    "ca": "iso-8859-1",
    "it": "iso-8859-1",
    "fi": "iso-8859-1",
    "ru": "utf-8",
}

# Text in the voices' own languages (Russian in Cyrillic, hence the RUF001 waivers).
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "The river flows slowly past the old mill, where children play every summer afternoon.",
        "Please bring the blue folder to the second floor before the meeting starts at noon.",
        "A cold wind came down from the hills and rattled the windows of the little station.",
        "She counted the coins twice, then paid for the bread, the cheese and a bag of apples.",
        "Nobody expected the concert to sell out, but the hall was full an hour early.",
        "Turn left at the bakery, cross the bridge, and the library is on your right.",
        "The baker opens his shop before dawn, and the smell of warm bread fills the whole street.",
        "We walked along the beach until the lighthouse was only a small light behind us.",
        "My grandmother kept every letter she received in a wooden box under her bed.",
        "The train to the coast leaves at half past seven, so we should go to bed early tonight.",
        "After the storm the garden was full of broken branches and fallen leaves.",
        "He painted the kitchen door green, because his daughter said it looked like spring.",
        "The teacher asked the class to write a short story about a journey by boat.",
        "On cold evenings the farmers gather in the tavern to talk about the weather and the harvest.",
        "The old clock in the hall stopped at midnight, and nobody knew how to wind it again.",
        "Fresh snow covered the fields, and the tracks of a fox led straight into the forest.",
        "She learned to play the violin in a small room above her uncle's shop.",
        "The market sells fish in the morning and flowers in the afternoon.",
        "Our neighbours built a small boat in their garage and sailed it across the lake.",
        "When the lights went out, we sat by the fire and told each other stories.",
        "The doctor said that a long walk every day is better than any medicine.",
        "They planted three apple trees in the yard on the day their son was born.",
        "A letter arrived this morning with a stamp from a country I have never visited.",
        "The bus was late again, so I read half a book while I waited at the stop.",
    ),
    "ca": (
        "El riu passa a poc a poc vora el vell moli, on els nens juguen cada estiu.",
        "Si us plau, porta la carpeta blava al segon pis abans de la reunio.",
        "Un vent fred baixava de les muntanyes i feia tremolar les finestres de l'estacio.",
        "Va comptar les monedes dues vegades i despres va pagar el pa i el formatge.",
        "Ningu esperava que el concert s'exhauris, pero la sala era plena una hora abans.",
        "Gira a l'esquerra al forn, travessa el pont i la biblioteca es a la dreta.",
        "El forner obre la botiga abans de l'alba i l'olor del pa calent omple tot el carrer.",
        "Vam caminar per la platja fins que el far era nomes un petit llum darrere nostre.",
        "La meva avia guardava totes les cartes en una caixa de fusta sota el llit.",
        "El tren cap a la costa surt a dos quarts de vuit, aixi que avui anirem a dormir d'hora.",
        "Despres de la tempesta el jardi era ple de branques trencades i fulles caigudes.",
        "Va pintar la porta de la cuina de color verd perque la seva filla deia que semblava la primavera.",
        "La mestra va demanar a la classe que escrivis un conte sobre un viatge amb vaixell.",
        "Les nits fredes els pagesos es reuneixen a la taverna per parlar del temps i de la collita.",
        "El rellotge vell del rebedor es va aturar a mitjanit i ningu no sabia com donar-li corda.",
        "La neu nova cobria els camps i les petjades d'una guineu anaven dretes cap al bosc.",
        "Va aprendre a tocar el violi en una petita habitacio damunt la botiga del seu oncle.",
        "Al mercat venen peix al mati i flors a la tarda.",
        "Els nostres veins van construir una barca al garatge i van travessar el llac.",
        "Quan es va apagar la llum, vam seure vora el foc i ens vam explicar histories.",
        "El metge va dir que un llarg passeig cada dia val mes que qualsevol medicament.",
        "Van plantar tres pomeres al pati el dia que va neixer el seu fill.",
        "Aquest mati ha arribat una carta amb un segell d'un pais que no he visitat mai.",
        "L'autobus tornava a fer tard, i vaig llegir mig llibre mentre esperava a la parada.",
    ),
    "cs": (
        "Řeka pomalu teče kolem starého mlýna, kde si děti každé léto hrají.",
        "Prosím, přineste modrou složku do druhého patra ještě před poradou.",
        "Z kopců foukal studený vítr a rachotil okny malého nádraží.",
        "Dvakrát přepočítala mince a pak zaplatila chleba, sýr a pytel jablek.",
        "Nikdo nečekal, že koncert bude vyprodaný, ale sál byl plný hodinu předem.",
        "U pekárny zahněte doleva, přejděte most a knihovna je napravo.",
        "Pekař otevírá krám před svítáním a vůně teplého chleba naplní celou ulici.",
        "Šli jsme po pláži, dokud maják nebyl jen malým světlem za námi.",
        "Moje babička schovávala všechny dopisy v dřevěné krabici pod postelí.",
        "Vlak k moři odjíždí v půl osmé, takže dnes půjdeme brzy spát.",
        "Po bouřce byla zahrada plná zlámaných větví a spadaného listí.",
        "Natřel dveře kuchyně na zeleno, protože dcera říkala, že vypadají jako jaro.",
        "Učitelka požádala třídu, aby napsala krátký příběh o cestě lodí.",
        "Za chladných večerů se sedláci scházejí v hospodě a mluví o počasí a o úrodě.",
        "Staré hodiny v předsíni se zastavily o půlnoci a nikdo je neuměl natáhnout.",
        "Čerstvý sníh pokryl pole a stopy lišky vedly přímo do lesa.",
        "Na housle se naučila hrát v malém pokoji nad strýcovým obchodem.",
        "Na trhu ráno prodávají ryby a odpoledne květiny.",
        "Naši sousedé postavili v garáži malou loď a přepluli s ní jezero.",
        "Když zhasla světla, seděli jsme u ohně a vyprávěli si příběhy.",
        "Lékař řekl, že dlouhá procházka každý den je lepší než jakýkoli lék.",
        "V den, kdy se jim narodil syn, zasadili na dvoře tři jabloně.",
        "Dnes ráno přišel dopis se známkou ze země, kterou jsem nikdy nenavštívil.",
        "Autobus zase měl zpoždění, a tak jsem na zastávce přečetl půl knihy.",
    ),
    "it": (
        "Il fiume scorre lento vicino al vecchio mulino, dove i bambini giocano ogni estate.",
        "Per favore porta la cartella blu al secondo piano prima della riunione.",
        "Un vento freddo scendeva dalle colline e faceva tremare le finestre della stazione.",
        "Ha contato le monete due volte e poi ha pagato il pane e il formaggio.",
        "Nessuno pensava che il concerto fosse esaurito, ma la sala era piena un'ora prima.",
        "Gira a sinistra al forno, attraversa il ponte e la biblioteca e sulla destra.",
        "Il fornaio apre la bottega prima dell'alba e il profumo del pane caldo riempie tutta la strada.",
        "Abbiamo camminato lungo la spiaggia finche il faro era solo una piccola luce dietro di noi.",
        "Mia nonna conservava tutte le lettere in una scatola di legno sotto il letto.",
        "Il treno per la costa parte alle sette e mezza, quindi stasera andiamo a letto presto.",
        "Dopo il temporale il giardino era pieno di rami spezzati e di foglie cadute.",
        "Ha dipinto di verde la porta della cucina, perche sua figlia diceva che sembrava primavera.",
        "La maestra ha chiesto alla classe di scrivere un breve racconto su un viaggio in barca.",
        "Nelle sere fredde i contadini si ritrovano all'osteria per parlare del tempo e del raccolto.",
        "Il vecchio orologio dell'ingresso si e fermato a mezzanotte e nessuno sapeva come caricarlo.",
        "La neve fresca copriva i campi e le orme di una volpe portavano dritte nel bosco.",
        "Ha imparato a suonare il violino in una stanzetta sopra il negozio dello zio.",
        "Al mercato vendono pesce la mattina e fiori il pomeriggio.",
        "I nostri vicini hanno costruito una barca in garage e hanno attraversato il lago.",
        "Quando si e spenta la luce, ci siamo seduti vicino al fuoco a raccontare storie.",
        "Il medico ha detto che una lunga passeggiata ogni giorno vale piu di qualsiasi medicina.",
        "Hanno piantato tre meli nel cortile il giorno in cui e nato il loro figlio.",
        "Stamattina e arrivata una lettera con un francobollo di un paese che non ho mai visitato.",
        "L'autobus era di nuovo in ritardo, cosi ho letto mezzo libro alla fermata.",
    ),
    "ru": (
        "Река медленно течёт мимо старой мельницы, где летом играют дети.",
        "Пожалуйста, принесите синюю папку на второй этаж до начала собрания.",
        "С холмов дул холодный ветер, и в маленькой станции дрожали окна.",  # noqa: RUF001
        "Она дважды пересчитала монеты и заплатила за хлеб, сыр и яблоки.",
        "Никто не ожидал, что все билеты продадут, но зал был полон за час.",
        "У пекарни поверните налево, перейдите мост, и библиотека будет справа.",  # noqa: RUF001
        "Пекарь открывает лавку до рассвета, и запах тёплого хлеба наполняет всю улицу.",
        "Мы шли по берегу, пока маяк не стал маленьким огоньком позади нас.",  # noqa: RUF001
        "Моя бабушка хранила все письма в деревянной шкатулке под кроватью.",
        "Поезд к морю уходит в половине восьмого, поэтому сегодня мы ляжем пораньше.",
        "После грозы сад был полон сломанных веток и опавших листьев.",
        "Он покрасил дверь на кухне в зелёный цвет, потому что дочь сказала, что это похоже на весну.",
        "Учительница попросила класс написать короткий рассказ о путешествии на лодке.",  # noqa: RUF001
        "Холодными вечерами крестьяне собираются в трактире и говорят о погоде и урожае.",  # noqa: RUF001
        "Старые часы в прихожей остановились в полночь, и никто не знал, как их завести.",
        "Свежий снег покрыл поля, и следы лисы вели прямо в лес.",
        "Она научилась играть на скрипке в маленькой комнате над лавкой дяди.",
        "На рынке утром продают рыбу, а после обеда цветы.",  # noqa: RUF001
        "Наши соседи построили в гараже лодку и переплыли на ней озеро.",
        "Когда погас свет, мы сидели у огня и рассказывали друг другу истории.",  # noqa: RUF001
        "Врач сказал, что долгая прогулка каждый день лучше любого лекарства.",
        "В день, когда родился их сын, они посадили во дворе три яблони.",  # noqa: RUF001
        "Сегодня утром пришло письмо с маркой из страны, где я никогда не был.",  # noqa: RUF001
        "Автобус опять опоздал, и я прочитал на остановке полкниги.",
    ),
    "fi": (
        "Joki virtaa hitaasti vanhan myllyn ohi, jossa lapset leikkivät joka kesä.",
        "Tuo sininen kansio toiseen kerrokseen ennen kokouksen alkua, kiitos.",
        "Kylmä tuuli puhalsi kukkuloilta ja kolisutti pienen aseman ikkunoita.",
        "Hän laski kolikot kahdesti ja maksoi sitten leivän, juuston ja omenat.",
        "Kukaan ei odottanut konsertin myyvän loppuun, mutta sali oli täynnä tuntia ennen.",
        "Käänny leipomon kohdalla vasemmalle, ylitä silta, ja kirjasto on oikealla.",
        "Leipuri avaa puotinsa ennen aamunkoittoa, ja lämpimän leivän tuoksu täyttää koko kadun.",
        "Kävelimme rantaa pitkin, kunnes majakka oli enää pieni valo takanamme.",
        "Isoäitini säilytti kaikki kirjeensä puulaatikossa sänkynsä alla.",
        "Juna rannikolle lähtee puoli kahdeksalta, joten menemme tänään aikaisin nukkumaan.",
        "Myrskyn jälkeen puutarha oli täynnä katkenneita oksia ja pudonneita lehtiä.",
        "Hän maalasi keittiön oven vihreäksi, koska tytär sanoi sen näyttävän keväältä.",
        "Opettaja pyysi luokkaa kirjoittamaan lyhyen tarinan veneretkestä.",
        "Kylminä iltoina talonpojat kokoontuvat krouviin puhumaan säästä ja sadosta.",
        "Eteisen vanha kello pysähtyi keskiyöllä, eikä kukaan osannut vetää sitä.",
        "Tuore lumi peitti pellot, ja ketun jäljet johtivat suoraan metsään.",
        "Hän oppi soittamaan viulua pienessä huoneessa setänsä kaupan yläpuolella.",
        "Torilla myydään aamulla kalaa ja iltapäivällä kukkia.",
        "Naapurimme rakensivat autotallissa pienen veneen ja soutivat sillä järven yli.",
        "Kun valot sammuivat, istuimme tulen ääressä ja kerroimme toisillemme tarinoita.",
        "Lääkäri sanoi, että pitkä kävely joka päivä on parempi kuin mikään lääke.",
        "He istuttivat pihalle kolme omenapuuta sinä päivänä, kun heidän poikansa syntyi.",
        "Tänä aamuna tuli kirje, jossa oli postimerkki maasta, jossa en ole koskaan käynyt.",
        "Bussi oli taas myöhässä, joten luin pysäkillä puoli kirjaa.",
    ),
}

# A song of our own (words and tune), one note per syllable: (syllable, note, beats). Its words share no
# sentence with SENTENCES, so a sung render shares neither audio nor text with the spoken renders.
SONG_BPM = 96
SONG: tuple[tuple[str, str, float], ...] = (
    ("morn", "G3", 1.0),
    ("ing", "A3", 0.5),
    ("light", "B3", 1.5),
    ("on", "D4", 0.5),
    ("the", "B3", 0.5),
    ("wa", "A3", 1.0),
    ("ter", "G3", 1.0),
    ("sing", "A3", 1.0),
    ("me", "B3", 0.5),
    ("home", "C4", 1.5),
    ("a", "B3", 0.5),
    ("gain", "A3", 2.0),
    ("roll", "D4", 1.0),
    ("ing", "E4", 0.5),
    ("hills", "D4", 1.5),
    ("and", "B3", 0.5),
    ("gold", "C4", 1.0),
    ("en", "B3", 0.5),
    ("fields", "A3", 1.5),
    ("car", "G3", 1.0),
    ("ry", "A3", 0.5),
    ("me", "B3", 1.0),
    ("home", "A3", 1.0),
    ("once", "F#3", 0.5),
    ("more", "G3", 2.5),
)
# Voices whose Festival back end follows the singing-mode pitch targets (the diphone voices of English).
SINGING_VOICES = ("festival-kal", "festival-ked")


def ensure_system_packages() -> None:
    """Install Festival, its voices, flite and KLettres' recordings with apt-get when any is missing."""
    if _packages_present():
        return
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        raise SpeechRenderError("speech voices are needed: apt-get install " + " ".join(SYSTEM_PACKAGES))
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "-qq", "--no-install-recommends", *SYSTEM_PACKAGES]
    # Fixed argument lists of our own: no untrusted input reaches these commands.
    if subprocess.run(install, env=environment, capture_output=True, check=False).returncode != 0:
        # The package lists may be missing on a fresh machine: refresh them once and retry.
        subprocess.run([apt_get, "update", "-qq"], env=environment, capture_output=True, check=True)
        subprocess.run(install, env=environment, capture_output=True, check=True)
    if not _packages_present():
        raise SpeechRenderError("apt-get ran but a speech package is still missing")


def _packages_present() -> bool:
    return (
        shutil.which("text2wave") is not None
        and shutil.which("flite") is not None
        and (KLETTRES_ROOT / "uk").is_dir()
        and Path("/usr/share/festival/voices/finnish/hy_fi_mv_diphone").is_dir()
        and Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits").is_dir()
    )


def render_speech(
    dest_dir: Path,
    voices: Sequence[str] | None = None,
    sentences: Sequence[int] = range(DEFAULT_SENTENCE_COUNT),
) -> dict[str, list[Path]]:
    """Render sentence numbers ``sentences`` in each voice (all of VOICES by default), cached in ``dest_dir``.

    Returns voice name -> WAV paths in the order of ``sentences``. Sentence ``k`` of a reading voice is
    ``SENTENCES[language][k]``; of a recorded voice, its ``k``-th disjoint group of recordings.
    """
    names = list(voices) if voices is not None else [voice.name for voice in VOICES]
    unknown = [name for name in names if name not in VOICES_BY_NAME]
    if unknown:
        raise SpeechRenderError(f"unknown voices: {', '.join(unknown)}")
    rendered: dict[str, list[Path]] = {}
    for name in names:
        voice = VOICES_BY_NAME[name]
        rendered[name] = [_render_sentence(voice, index, dest_dir / name) for index in sentences]
    return rendered


def render_song(dest_dir: Path, voice_name: str) -> Path:
    """Sing SONG in one of SINGING_VOICES (cached) and return the WAV path."""
    if voice_name not in SINGING_VOICES:
        raise SpeechRenderError(f"{voice_name} cannot sing; choose one of {', '.join(SINGING_VOICES)}")
    voice = VOICES_BY_NAME[voice_name]
    score = _song_xml()
    target = dest_dir / voice_name / f"song-{_digest(voice, score)}.wav"
    if target.is_file():
        return target
    text2wave = _require("text2wave")
    with tempfile.TemporaryDirectory(prefix="tribute-song-") as workdir:
        score_path = Path(workdir) / "song.xml"
        raw_path = Path(workdir) / "raw.wav"
        score_path.write_text(score, encoding="ascii")
        command = [
            text2wave,
            "-mode",
            "singing",
            str(score_path),
            "-o",
            str(raw_path),
            "-eval",
            f"(voice_{voice.engine_voice})",
        ]
        _run(command, cwd=Path(workdir), output=raw_path)
        samples = _load_mono_16k(raw_path)
    _write_wav(target, samples)
    return target


def _song_xml() -> str:
    notes = "\n".join(
        f'<PITCH NOTE="{note}"><DURATION BEATS="{beats}">{syllable}</DURATION></PITCH>'
        for syllable, note, beats in SONG
    )
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE SINGING PUBLIC "-//SINGING//DTD SINGING mark up//EN" "Singing.v0_1.dtd" []>\n'
        f'<SINGING BPM="{SONG_BPM}">\n{notes}\n</SINGING>\n'
    )


def _render_sentence(voice: SpeechVoice, index: int, voice_dir: Path) -> Path:
    if voice.engine == "klettres":
        recordings = _recording_group(voice, index)
        target = voice_dir / f"s{index}-{_digest(voice, *(path.name for path in recordings))}.wav"
        if not target.is_file():
            _write_wav(target, _string_recordings(recordings))
        return target
    sentence_list = SENTENCES[voice.language]
    if not 0 <= index < len(sentence_list):
        raise SpeechRenderError(f"{voice.name} has sentences 0..{len(sentence_list) - 1}, not {index}")
    text = sentence_list[index]
    target = voice_dir / f"s{index}-{_digest(voice, text)}.wav"
    if not target.is_file():
        _write_wav(target, _synthesise(voice, text))
    return target


def _digest(voice: SpeechVoice, *parts: str) -> str:
    key = "\x1f".join((RENDER_VERSION, voice.engine, voice.engine_voice, *parts))
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def _synthesise(voice: SpeechVoice, text: str) -> npt.NDArray[np.float32]:
    with tempfile.TemporaryDirectory(prefix="tribute-speech-") as workdir:
        text_path = Path(workdir) / "text.txt"
        raw_path = Path(workdir) / "raw.wav"
        if voice.engine == "festival":
            encoding = _TEXT_ENCODINGS.get(voice.language, "ascii")
            text_path.write_bytes(text.encode(encoding))
            command = [
                _require("text2wave"),
                str(text_path),
                "-o",
                str(raw_path),
                "-eval",
                f"(voice_{voice.engine_voice})",
            ]
        elif voice.engine == "flite":
            text_path.write_text(text, encoding="ascii")
            command = [
                _require("flite"),
                "-voice",
                voice.engine_voice,
                "-f",
                str(text_path),
                "-o",
                str(raw_path),
            ]
        else:
            raise SpeechRenderError(f"unknown engine {voice.engine}")
        _run(command, cwd=Path(workdir), output=raw_path)
        return _trim(_load_mono_16k(raw_path))


def _recording_group(voice: SpeechVoice, index: int) -> list[Path]:
    if not 0 <= index < RECORDED_GROUP_COUNT:
        raise SpeechRenderError(f"{voice.name} has sentences 0..{RECORDED_GROUP_COUNT - 1}, not {index}")
    folder = KLETTRES_ROOT / voice.engine_voice
    recordings = sorted(folder.rglob("*.ogg"))
    if len(recordings) < RECORDED_GROUP_COUNT:
        raise SpeechRenderError(f"{folder} has {len(recordings)} recordings: call ensure_system_packages()")
    # A fixed shuffle mixes letters and syllables into every group; the seed names the voice, so the
    # groups are the same on every machine.
    random.Random(voice.name).shuffle(recordings)
    return recordings[index::RECORDED_GROUP_COUNT]


def _string_recordings(recordings: Sequence[Path]) -> npt.NDArray[np.float32]:
    gap = np.zeros(round(_RECORDED_GAP_S * SAMPLE_RATE_HZ), dtype=np.float32)
    parts: list[npt.NDArray[np.float32]] = []
    total = 0
    limit = round(RECORDED_MAX_DURATION_S * SAMPLE_RATE_HZ)
    for path in recordings:
        clip = _trim(_load_mono_16k(path))
        if clip.size == 0:
            continue
        # Recordings were made at different levels; speaker identity should not ride on loudness.
        clip = (clip * (0.5 / max(float(np.max(np.abs(clip))), 1e-6))).astype(np.float32)
        parts.extend((clip, gap))
        total += clip.size + gap.size
        if total >= limit:
            break
    if not parts:
        raise SpeechRenderError("no audible recordings in the group")
    return np.concatenate(parts)[:limit]


def _load_mono_16k(path: Path) -> npt.NDArray[np.float32]:
    import soundfile
    from scipy.signal import resample_poly

    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE_HZ:
        divisor = gcd(int(rate), SAMPLE_RATE_HZ)
        mono = resample_poly(mono, SAMPLE_RATE_HZ // divisor, int(rate) // divisor)
    return np.asarray(mono, dtype=np.float32)


def _trim(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Cut leading and trailing near-silence (below the peak by _TRIM_BELOW_PEAK_DB)."""
    if samples.size == 0:
        return samples
    threshold = float(np.max(np.abs(samples))) * 10 ** (-_TRIM_BELOW_PEAK_DB / 20)
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        return samples[:0]
    margin = SAMPLE_RATE_HZ // 20
    return samples[max(int(loud[0]) - margin, 0) : int(loud[-1]) + margin]


def _write_wav(target: Path, samples: npt.NDArray[np.float32]) -> None:
    import soundfile

    target.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a concurrent reader never sees half a file.
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".wav.part")
    os.close(handle)
    try:
        soundfile.write(
            temporary, np.clip(samples, -1.0, 1.0), SAMPLE_RATE_HZ, subtype="PCM_16", format="WAV"
        )
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _require(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise SpeechRenderError(f"{program} is missing: call ensure_system_packages() first")
    return found


def _run(command: Sequence[str], cwd: Path, output: Path) -> None:
    try:
        result = subprocess.run(
            list(command), cwd=cwd, capture_output=True, text=True, timeout=_RENDER_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise SpeechRenderError(f"{command[0]} timed out") from error
    if result.returncode != 0 or not output.is_file():
        raise SpeechRenderError(f"{Path(command[0]).name} failed: {result.stderr.strip()[-500:]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--sentences", type=int, default=DEFAULT_SENTENCE_COUNT)
    parser.add_argument("--voice", action="append", dest="voices", help="voice name (repeatable)")
    parser.add_argument("--song", action="store_true", help="also sing SONG in the singing voices")
    arguments = parser.parse_args(argv)
    ensure_system_packages()
    rendered = render_speech(arguments.dest, arguments.voices, range(arguments.sentences))
    for name, paths in rendered.items():
        print(name, " ".join(path.name for path in paths))
    if arguments.song:
        for name in SINGING_VOICES:
            print(name, render_song(arguments.dest, name).name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
