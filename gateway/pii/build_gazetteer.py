"""Build-time helper that (re)writes ``data/first_names_*.txt`` / ``data/last_names_*.txt``.

Run manually: ``python -m gateway.pii.build_gazetteer``.  It reads the name lists
that ship inside the installed *faker* package (de_DE, de_AT, de_CH, tr_TR,
pl_PL, en_US ...) and merges them with the hand-written lists below.  The
runtime never imports this module and never depends on faker.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"

# the most common German surnames plus surnames frequent among Wiesbaden residents
# of Turkish, Arab, Polish, Russian, Balkan, Italian, Greek, Afghan, Eritrean ... origin
EXTRA_LAST_DE = """
Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer Richter
Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Schmitt Werner
Schmitz Krause Meier Lehmann Schmid Schulze Maier Köhler Herrmann König Walter Mayer Huber Kaiser Fuchs
Peters Lang Scholz Möller Weiß Jung Hahn Schubert Vogel Friedrich Keller Günther Frank Berger Winkler
Roth Beck Lorenz Baumann Franke Albrecht Schuster Simon Ludwig Böhm Winter Kraus Martin Schumacher
Krämer Vogt Stein Jäger Otto Sommer Groß Seidel Heinrich Brandt Haas Schreiber Graf Schulte Dietrich
Ziegler Kuhn Kühn Pohl Engel Horn Busch Bergmann Thomas Voigt Sauer Arnold Wolff Pfeiffer Ernst Lindner
Hübner Kramer Franz Beyer Wolter Seifert Haase Jansen Hansen Petersen Nielsen Lorenzen Paulsen Janssen
Kaufmann Thiel Brinkmann Schütz Heinz Dreher Maurer Kurz Schade Ebert Sommerfeld Rieger Kroll Brand
Kunz Kunze Fiedler Marx Gebhardt Hermann Böhme Kolb Kessler Keßler Nagel Ritter Weise Wenzel Stark
Engelhardt Schuhmacher Wendt Schilling Hennig Ullrich Sander Rau Wilhelm Gross Thiele Stephan Mohr
Bauch Bock Reuter Behrens Witt Dörr Schön Reinhardt Heller Schwab Reichert Busse Hein Vetter Förster
Herzog Ahrens Scholl Pietsch Bender Hildebrandt Jakob Lutz Wirth Langer Hummel Schirmer Bach Gerlach
Kirchner Kretschmer Schramm Adam Nowak Siebert Baumgartner Berg Weiss Hesse Hohmann Straub Zimmer
Probst Henning Kraft Körner Bruns Fritz Dittrich Diehl Wiegand Michel Heß Marquardt Gärtner Hagen Mann
Ott Hauck Anders Eckert Rothe Pfeifer Beckmann Schindler Funk Lenz Blum Moser Buck Dietz Bartsch
Kühne Brandl Sturm Pohlmann Rupp Stahl Schenk Heinemann Schott Wagenknecht Fink Thom Raab Decker
Wegner Gerber Klose Hildebrand Göbel Pieper Kopp Fritsch Laux Jost Schaller Hammer Göttmann Stumpf
Emmerich Stoll Schaaf Bayer Bär Ackermann Arndt Bode Brenner Dorn Dürr Eder Endres Falk Feld Gruber
Hauser Heil Held Henkel Hirsch Hoppe Huth Jahn Janssen Kirsch Klug Knapp Kunkel Kuhlmann Lindemann
Löffler Mack Martens Merz Meißner Menzel Metzger Nolte Oswald Pape Paul Preuß Rath Rausch Reimann
Riedel Rösch Sachs Sauter Schick Schlegel Schlüter Schmitz Schneider Seeger Springer Steffen Steiner
Stoltz Strauß Tietz Unger Vollmer Volk Walther Weigel Weis Weller Wetzel Wiese Wille Wimmer Winkelmann
Witte Wolters Zander Zeller Zink Hofmeister Lamprecht Engelmann Hofbauer Schäffer Stöhr Brückner
Yılmaz Yilmaz Kaya Demir Şahin Sahin Çelik Celik Yıldız Yildiz Yıldırım Yildirim Öztürk Ozturk Aydın
Aydin Özdemir Ozdemir Arslan Doğan Dogan Kılıç Kilic Aslan Çetin Cetin Kara Koç Koc Kurt Özkan Ozkan
Şimşek Simsek Polat Korkmaz Karaca Erdoğan Erdogan Güler Guler Özer Yavuz Acar Aktaş Aktas Bulut Güneş
Gunes Keskin Tekin Altun Ünal Unal Kaplan Yüksel Yuksel Uçar Ucar Bozkurt Akın Akin Türk Tuerk Demirci
Al-Ahmad Al-Hassan Al-Khatib Al-Masri Al-Sayed Hussein Hassan Mohammed Mohamed Ahmed Ali Ibrahim
Abdullah Khalil Mahmoud Mustafa Youssef Saleh Haddad Nasser Rahimi Ahmadi Hosseini Mohammadi Karimi
Rezaei Hashemi Sadeghi Nazari Hakimi Popal Noori Amiri Sultani Haidari Tesfay Tesfaye Haile Gebremedhin
Kidane Tekle Ghebreyesus Mengistu Osman Abdi Farah Warsame
Nowak Kowalski Kowalska Wiśniewski Wisniewski Wójcik Wojcik Kowalczyk Kamiński Kaminski Lewandowski
Zieliński Zielinski Szymański Szymanski Woźniak Wozniak Dąbrowski Dabrowski Kozłowski Kozlowski
Jankowski Mazur Krawczyk Piotrowski Grabowski Pawłowski Pawlowski Michalski Zając Zajac Król Krol
Wieczorek Jabłoński Jablonski Majewski Olszewski Dudek Stępień Stepien
Ivanov Ivanova Petrov Petrova Smirnov Smirnova Kuznetsov Kuznetsova Popov Popova Sokolov Lebedev
Kozlov Novikov Morozov Volkov Volkova Fedorov Müller-Lüdenscheidt Schewtschenko Bondarenko Kowalenko
Tkachenko Kravchenko Melnyk Shevchenko Boyko Kovalenko
Horvat Kovačević Kovacevic Babić Babic Marić Maric Jurić Juric Novak Petrović Petrovic Jovanović
Jovanovic Nikolić Nikolic Popović Popovic Đorđević Dordevic Stojanović Stojanovic Hodžić Hodzic Hadžić
Hadzic Krasniqi Gashi Berisha Morina Shala Hoxha
Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti De\x20Luca
Costa Giordano Mancini Rizzo Lombardi Moretti Papadopoulos Georgiou Dimitriou Nikolaou Ioannou
Papadakis Garcia García Fernandez Fernández Lopez López Martinez Martínez Sanchez Sánchez Gonzalez
González Rodriguez Rodríguez Pereira Silva Santos Oliveira Ferreira Nguyen Tran Pham
Mustermann Musterfrau Mayer-Schulz Schmidt-Weber
"""

EXTRA_FIRST = """
Mohammed Muhammad Mohamed Mehmet Ahmet Mustafa Ali Hasan Hassan Hüseyin Huseyin İbrahim Ibrahim Yusuf
Emre Murat Kemal Serkan Burak Can Cem Deniz Elif Ayşe Ayse Fatma Fatima Zeynep Emine Hatice Merve
Esra Büşra Busra Selin Yasemin Aylin Derya Leyla Meryem Sibel Özlem Ozlem Gül Gul Songül Nur Nuray
Ömer Omer Osman Oğuz Oguz Tarık Tarik Yasin Yunus Eren Efe Berat Kerem Arda Mert Ahmad Ahmed Omar
Khaled Khalid Mahmoud Samir Karim Tarek Youssef Yousef Amir Hamid Reza Ali-Reza Farid Navid Jamal
Aisha Aischa Amina Mariam Maryam Noor Yasmin Layla Rania Hanna Dalia Samira Shirin Soraya Zahra
Aziz Abdul Abdullah Abdel Hussein Saeed Said Walid Nabil Bilal Ilyas Idris Adnan Anas Rami Sami
Tesfay Yonas Dawit Semhar Helen Selam Almaz Mulu
Piotr Paweł Pawel Krzysztof Tomasz Andrzej Marek Michał Michal Jakub Kasia Katarzyna Agnieszka
Małgorzata Malgorzata Magdalena Joanna Anna Ewa Dorota Beata Zofia Aleksandra
Dmitri Dmitrij Sergej Sergei Wladimir Vladimir Aleksandr Alexej Alexei Igor Juri Jurij Oleg Nikolai
Natalia Natalja Olga Swetlana Svetlana Tatjana Irina Ljudmila Jelena Oksana Ludmila Galina Walentina
Olena Oleksandr Andrii Taras Bohdan Mykola Iryna Kateryna Yulia Julija
Luca Marco Giuseppe Giovanni Francesco Alessandro Giulia Chiara Francesca Sofia
Dimitrios Georgios Konstantinos Eleni Maria Ioanna Nikos Jovana Milica Dragan Goran Zoran Ivana Marija
Arben Besnik Valon Driton Fatmir Albana Arta Blerta
Kevin Justin Chantal Jacqueline Mandy Ronny Marvin Dennis Pascal Kevin-Pascal Jannik Jonas Finn Noah
Ben Elias Luis Louis Felix Henry Emil Anton Theo Paul Leon Maximilian Max Lukas Luca Oskar Jakob
Mia Emma Sophia Hannah Emilia Lina Mila Ella Leni Clara Lea Marie Lena Luisa Frieda Ida Greta Nele
Lotta Ronja Zoe Amelie Johanna Charlotte Laura Sarah Julia Lisa Jana Nina Lara Leonie Vanessa Jessica
Jennifer Melanie Sabrina Nicole Stefanie Sandra Claudia Andrea Petra Monika Susanne Sabine Birgit
Heike Karin Ute Uta Renate Ingrid Gisela Ursula Helga Brigitte Erika Elke Doris Hannelore Gerda
"""

# capitalised words that are names but far more often ordinary words in German text
STOP_FIRST = [
    "Mai",
    "April",
    "Juni",
    "Juli",
    "August",
    "Januar",
    "Februar",
    "März",
    "September",
    "Oktober",
    "November",
    "Dezember",
    "Ernst",
    "Mark",
    "Will",
    "Hope",
    "Rose",
    "Iris",
    "Heide",
    "Linde",
    "Gut",
    "Liebe",
    "Engel",
    "Christ",
    "Fee",
    "Gabe",
    "Rosa",
    "Grau",
    "Sonne",
    "Stern",
    "Winter",
    "Sommer",
    "Herbst",
    "Frühling",
    "Morgen",
    "Abend",
    "Nacht",
    "Tag",
    "Klein",
    "Lang",
    "Kurz",
    "Jung",
    "Alt",
    "Neu",
    "Rot",
    "Fleming",
    "Lamm",
    "Bruder",
    "Kind",
    "Sonntag",
    "Montag",
    "Paris",
    "Berlin",
    "Hessen",
    "Florence",
    "Adolf",
    "Kai",
    "Kim",
    "Sky",
    "Summer",
    "Ocean",
    "Dolly",
    "Christian",
]

STOP_LAST = [
    "Adler",
    "Anders",
    "Bauer",
    "Baum",
    "Beer",
    "Bien",
    "Bruder",
    "Eimer",
    "Ernst",
    "Faust",
    "Gute",
    "Graf",
    "Hahn",
    "Huhn",
    "Killer",
    "Klapp",
    "Koch",
    "Kohl",
    "Kranz",
    "Krebs",
    "Kraus",
    "Lange",
    "Lang",
    "Meister",
    "Mühle",
    "Ring",
    "Rose",
    "Salz",
    "Sauer",
    "Steuer",
    "Stroh",
    "Stumpf",
    "Trupp",
    "Zahn",
    "Zimmer",
    "Putz",
    "Rust",
    "Schüler",
    "Förster",
    "Jungfer",
    "Kramer",
    "Wende",
    "Mende",
    "Hering",
    "Junk",
    "Mies",
    "Karge",
    "Knappe",
    "Scheibe",
    "Schacht",
    "Weiß",
    "Weiss",
    "Schenk",
    "Geisel",
    "Hesse",
    "Römer",
    "Lindau",
    "Lorch",
    "Metz",
    "Steinberg",
    "Holsten",
    "Schlosser",
    "Richter",
    "Klein",
    "Wolf",
    "Schwarz",
    "Braun",
    "König",
    "Kaiser",
    "Fuchs",
    "Jung",
    "Vogel",
    "Keller",
    "Winter",
    "Stein",
    "Jäger",
    "Sommer",
    "Groß",
    "Gross",
    "Engel",
    "Horn",
    "Busch",
    "Berg",
    "Feld",
    "Stahl",
    "Brand",
    "Kurz",
    "Stark",
    "Schön",
    "Heil",
    "Held",
    "Hammer",
    "Mann",
    "Kraft",
    "Sturm",
    "Bach",
    "Hagen",
    "Herzog",
    "Marx",
    "Hirsch",
    "Kirsch",
    "Bär",
    "Mohr",
    "Dorn",
    "Volk",
    "Wille",
    "Bock",
    "Witt",
    "Witte",
    "Kopp",
    "Knapp",
    "Klug",
    "Laux",
    "Reich",
    "Fink",
    "Falk",
    "Sachs",
    "Martin",
    "Paul",
    "Adam",
    "Thomas",
    "Simon",
    "Otto",
    "Franz",
    "Frank",
    "Michel",
    "Stephan",
    "Wilhelm",
    "Heinrich",
    "Friedrich",
    "Ludwig",
    "Arnold",
    "Walter",
    "Hermann",
    "Günther",
    "Lorenz",
    "Albrecht",
    "Dietrich",
    "Jakob",
    "Fritz",
    "Hein",
    "Heinz",
    "Jost",
    "Steffen",
    "Oswald",
    "Carsten",
    "Christoph",
    "Johann",
    "Jacob",
    "Caspar",
    "Rath",
    "Rausch",
    "Lenz",
    "Ott",
    "Bode",
    "Pape",
    "Schade",
    "Dreher",
    "Maurer",
    "Kaufmann",
    "Gärtner",
    "Hofmeister",
    "Springer",
    "Decker",
    "Gerber",
    "Metzger",
    "Schreiber",
    "Schuster",
    "Krämer",
    "Kürschner",
    "Kurt",
    "Türk",
    "Ali",
    "Kara",
    "Polat",
    "Novak",
    "Bruno",
    "Costa",
    "Silva",
    "Santos",
    "Greco",
    "Conti",
    "Gallo",
    "Eder",
    "Huth",
    "Mack",
    "Preuß",
    "Stoll",
    "Schott",
    "Funk",
    "Thom",
    "Zink",
    "Dürr",
    "Tran",
    "Pham",
    "Nguyen",
]


def _faker_list(module: str, attr: str) -> list[str]:
    try:
        mod: Any = importlib.import_module(f"faker.providers.person.{module}")
    except ImportError:
        return []
    value = getattr(mod.Provider, attr, ())
    if isinstance(value, dict):
        return list(value)
    return list(value)


def _clean(names: list[str]) -> list[str]:
    out = set()
    for n in names:
        n = n.strip().replace("\\x20", " ")
        if not n or " " in n or not n[0].isupper() or len(n) < 2:
            continue
        out.add(n)
    return sorted(out)


def _write(path: Path, header: str, names: list[str]) -> None:
    path.write_text(f"# {header}\n" + "\n".join(names) + "\n", encoding="utf-8")


def main() -> None:
    DATA.mkdir(exist_ok=True)
    first_de: list[str] = EXTRA_FIRST.split()
    for loc in ("de_DE", "de_AT", "de_CH"):
        for attr in ("first_names_male", "first_names_female", "first_names"):
            first_de += _faker_list(loc, attr)
    for loc in ("tr_TR",):
        for attr in ("first_names_male", "first_names_female"):
            first_de += _faker_list(loc, attr)
    last_de: list[str] = EXTRA_LAST_DE.split()
    for loc in ("de_DE", "de_AT", "de_CH", "tr_TR"):
        last_de += _faker_list(loc, "last_names")
    first_en = _faker_list("en_US", "first_names") + _faker_list("en_GB", "first_names") + EXTRA_FIRST.split()
    last_en = _faker_list("en_US", "last_names") + _faker_list("en_GB", "last_names") + EXTRA_LAST_DE.split()
    note = "derived at build time from faker's bundled name lists + hand-written additions"
    _write(DATA / "first_names_de.txt", note, _clean(first_de))
    _write(DATA / "last_names_de.txt", note, _clean(last_de))
    _write(DATA / "first_names_en.txt", note, _clean(first_en))
    _write(DATA / "last_names_en.txt", note, _clean(last_en))
    _write(DATA / "stop_first_names.txt", "names that are mostly ordinary words", sorted(set(STOP_FIRST)))
    _write(DATA / "stop_last_names.txt", "surnames that are mostly ordinary words", sorted(set(STOP_LAST)))


if __name__ == "__main__":
    main()
