"""Word lists the ``seed_catalog`` command builds a believable catalog from.

Every category has its own lists; a product name is one pick from each of ``name_parts``
joined by spaces (books are titled "The <adjective> <noun>"), and a description is made from
the category's features, uses and closing lines.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class CategoryWords:
    slug: str
    name: str
    colour: str
    shape: str
    price_range: tuple[int, int]
    name_parts: tuple[tuple[str, ...], ...]
    features: tuple[str, ...]
    uses: tuple[str, ...]
    closings: tuple[str, ...]


CATEGORIES: tuple[CategoryWords, ...] = (
    CategoryWords(
        slug="shoes",
        name="Shoes",
        colour="#c2410c",
        shape="ellipse",
        price_range=(39, 189),
        name_parts=(
            ("Trail", "Urban", "Classic", "Cloud", "Summit", "Harbor", "Featherlight", "Metro"),
            ("Leather", "Suede", "Canvas", "Knit", "Mesh", "Waterproof"),
            ("Sneaker", "Runner", "Hiking Boot", "Chelsea Boot", "Loafer", "Sandal", "Slip-On"),
        ),
        features=(
            "a cushioned footbed that stays comfortable all day",
            "a grippy rubber outsole",
            "a breathable, moisture-wicking lining",
            "a reinforced toe cap",
            "a padded collar that keeps heels in place",
            "recycled laces and eyelets that do not fray",
            "a lightweight foam midsole",
        ),
        uses=("city walks", "long commutes", "weekend hikes", "rainy mornings", "travel days"),
        closings=(
            "True to size; if you are between sizes, go up half a size.",
            "Wipe clean with a damp cloth.",
            "Comes in a recycled shoebox.",
        ),
    ),
    CategoryWords(
        slug="outdoor",
        name="Outdoor",
        colour="#15803d",
        shape="triangle",
        price_range=(19, 349),
        name_parts=(
            ("Alpine", "Ridge", "Basecamp", "Trailhead", "Nomad", "Cascade", "Timberline"),
            ("Ultralight", "Insulated", "Packable", "Ripstop", "Weatherproof"),
            (
                "Tent",
                "Sleeping Bag",
                "Daypack",
                "Rain Jacket",
                "Headlamp",
                "Trekking Poles",
                "Camp Stove",
                "Water Filter",
            ),
        ),
        features=(
            "taped seams that keep the weather out",
            "a compression sack that packs it down small",
            "reflective details for dusk and dawn",
            "tough ripstop fabric",
            "buckles you can work with gloves on",
            "a carry weight you will barely notice",
        ),
        uses=(
            "overnight trips",
            "alpine starts",
            "family campouts",
            "backcountry routes",
            "festival weekends",
        ),
        closings=(
            "Backed by a five-year warranty.",
            "Tested on long rainy weekends in the hills.",
            "Repair kit included.",
        ),
    ),
    CategoryWords(
        slug="kitchen",
        name="Kitchen",
        colour="#b45309",
        shape="circle",
        price_range=(12, 229),
        name_parts=(
            ("Chef's", "Heritage", "Nordic", "Bistro", "Artisan", "Everyday", "Farmhouse"),
            ("Cast-Iron", "Stainless", "Ceramic", "Bamboo", "Copper", "Enamel"),
            (
                "Skillet",
                "Dutch Oven",
                "Knife Set",
                "Cutting Board",
                "Teapot",
                "Mixing Bowls",
                "Saucepan",
                "French Press",
            ),
        ),
        features=(
            "even heating from edge to centre",
            "a comfortable handle that stays cool",
            "a finish that gets better with every use",
            "dishwasher-safe parts",
            "a generous capacity for family meals",
            "a non-slip base",
        ),
        uses=(
            "weeknight dinners",
            "slow Sunday brunches",
            "baking projects",
            "small apartment kitchens",
            "gifting a new home",
        ),
        closings=(
            "Works on gas, electric and induction hobs.",
            "Hand-finished, so each piece is slightly different.",
            "Care guide in the box.",
        ),
    ),
    CategoryWords(
        slug="books",
        name="Books",
        colour="#1d4ed8",
        shape="rectangle",
        price_range=(9, 39),
        name_parts=(
            ("The",),
            (
                "Silent",
                "Lost",
                "Hidden",
                "Last",
                "Winter",
                "Paper",
                "Midnight",
                "Distant",
                "Borrowed",
                "Salt",
            ),
            (
                "Garden",
                "Harbour",
                "Orchard",
                "Cartographer",
                "Lighthouse",
                "Archive",
                "Island",
                "Letters",
                "Atlas",
                "Kingdom",
            ),
        ),
        features=(
            "a page-turning plot with a twist you will not see coming",
            "warm, funny characters you will miss when it ends",
            "short chapters that are perfect for a commute",
            "beautiful line illustrations",
            "an afterword from the author",
            "a sewn binding that lies flat",
        ),
        uses=(
            "long train rides",
            "book clubs",
            "rainy afternoons",
            "reading aloud",
            "beach holidays",
        ),
        closings=(
            "Paperback, about 320 pages.",
            "Hardback with a ribbon marker.",
            "A staff pick this season.",
        ),
    ),
    CategoryWords(
        slug="toys",
        name="Toys",
        colour="#be185d",
        shape="star",
        price_range=(8, 119),
        name_parts=(
            ("Rainbow", "Rocket", "Jumbo", "Tiny", "Wooden", "Magnetic", "Galaxy"),
            ("Building Blocks", "Puzzle", "Robot Kit", "Plush Fox", "Train Set", "Marble Run"),
        ),
        features=(
            "sturdy pieces with rounded edges",
            "water-based, non-toxic paints",
            "a storage bag for tidy-up time",
            "clear picture instructions",
            "parts that work with our other sets",
            "no batteries needed",
        ),
        uses=(
            "rainy-day play",
            "birthday presents",
            "quiet time",
            "playing together as a family",
            "curious builders",
        ),
        closings=(
            "For ages 3 and up.",
            "Designed and tested with our youngest customers.",
            "Small parts: keep away from babies under 3.",
        ),
    ),
    CategoryWords(
        slug="beauty",
        name="Beauty",
        colour="#7e22ce",
        shape="hexagon",
        price_range=(7, 89),
        name_parts=(
            ("Hydrating", "Radiant", "Gentle", "Soothing", "Velvet", "Botanical", "Daily"),
            ("Rosehip", "Aloe", "Shea", "Vitamin C", "Green Tea", "Lavender"),
            (
                "Face Serum",
                "Night Cream",
                "Lip Balm",
                "Cleanser",
                "Body Lotion",
                "Hand Cream",
                "Hair Oil",
            ),
        ),
        features=(
            "a light texture that sinks in quickly",
            "a subtle natural scent",
            "fragrance-free sensitive-skin testing",
            "a refillable glass bottle",
            "plant-based active ingredients",
            "no parabens or microplastics",
        ),
        uses=(
            "morning routines",
            "dry winter skin",
            "travel bags",
            "after-sun care",
            "a calm evening ritual",
        ),
        closings=(
            "Dermatologically tested.",
            "Vegan and cruelty-free.",
            "Made in small batches.",
        ),
    ),
)

# Books get an author in their description.
AUTHOR_FIRST = ("Ada", "Milo", "Nora", "Theo", "Iris", "Jonah", "Leila", "Oskar", "Mina", "Ravi")
AUTHOR_LAST = ("Hart", "Lind", "Okafor", "Moreau", "Sato", "Brennan", "Varga", "Quinn", "Ng")
BOOK_GENRES = ("novel", "mystery", "memoir", "field guide", "story collection", "history")
