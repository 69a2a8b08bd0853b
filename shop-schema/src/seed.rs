//! `peakgate-shop seed`: realistic data through the proxy. Categories (Chinese and English
//! names), products with CJK and Latin titles, Latin and Chinese brands, and prices, stock for every SKU (the flash-sale
//! SKUs 1001-1010 included, whose rows the proxy puts on the hot instance; normal SKUs with the
//! units sold so far, search's popularity) and members who can
//! log in (`member{N}@shop.example`, password [`SEED_PASSWORD`]). Re-running it is harmless:
//! rows that exist are kept (INSERT IGNORE).

use indicatif::{ProgressBar, ProgressStyle};
use mysql_async::prelude::Queryable;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::db::lit;
use crate::money::Money;
use crate::service::auth;

/// The password of every seeded member.
pub const SEED_PASSWORD: &str = "peakgate";
/// The flash-sale SKUs (their stock rows live on the hot instance).
pub const HOT_SKUS: std::ops::RangeInclusive<u64> = 1001..=1010;
/// Rows per multi-row INSERT.
const BATCH: usize = 200;

/// The email of seeded member `n` (1-based).
pub fn member_email(n: u64) -> String {
    format!("member{n}@shop.example")
}

/// The product id of the `i`-th normal product (1-based): ids skip the flash-sale range.
pub fn normal_product_id(i: u64) -> u64 {
    if i < *HOT_SKUS.start() {
        i
    } else {
        i + (HOT_SKUS.end() - HOT_SKUS.start() + 1)
    }
}

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub members: u64,
    pub products: u64,
    /// Stock of each flash-sale SKU.
    pub hot_stock: i64,
    /// RNG seed, so two runs make the same catalogue.
    pub seed: u64,
    /// Show a progress bar.
    pub progress: bool,
}

/// (slug, Chinese name, English name).
const CATEGORIES: &[(&str, &str, &str)] = &[
    ("phones", "手机", "Phones"),
    ("laptops", "笔记本电脑", "Laptops"),
    ("audio", "耳机音响", "Audio"),
    ("home", "家居", "Home"),
    ("kitchen", "厨房电器", "Kitchen"),
    ("shoes", "运动鞋", "Sneakers"),
    ("apparel", "服装", "Apparel"),
    ("beauty", "美妆护肤", "Beauty"),
    ("snacks", "零食", "Snacks"),
    ("tea", "茶叶", "Tea"),
    ("toys", "玩具", "Toys"),
    ("books", "图书", "Books"),
];

/// (brand as the shop shows it and in Chinese titles, brand in English titles): Latin brands,
/// and Chinese ones that English titles spell in Latin.
pub const BRANDS: &[(&str, &str)] = &[
    ("Xiaomi", "Xiaomi"),
    ("Huawei", "Huawei"),
    ("Anker", "Anker"),
    ("Lenovo", "Lenovo"),
    ("Li-Ning", "Li-Ning"),
    ("Anta", "Anta"),
    ("美的", "Midea"),
    ("海尔", "Haier"),
    ("Uniqlo", "Uniqlo"),
    ("完美日记", "Perfect Diary"),
    ("三只松鼠", "Three Squirrels"),
    ("Muji", "Muji"),
    ("Sony", "Sony"),
    ("Lego", "Lego"),
];
const ADJ_ZH: &[&str] = &[
    "轻薄", "旗舰", "经典", "限定", "新款", "高端", "便携", "智能", "有机", "复古",
];
const ADJ_EN: &[&str] = &[
    "Slim", "Flagship", "Classic", "Limited", "New", "Premium", "Portable", "Smart", "Organic",
    "Retro",
];
/// (Chinese, English) product nouns, one per category.
pub const NOUNS: &[(&str, &str)] = &[
    ("手机", "Phone"),
    ("笔记本", "Laptop"),
    ("蓝牙耳机", "Bluetooth Earbuds"),
    ("保温杯", "Thermos"),
    ("电饭煲", "Rice Cooker"),
    ("跑步鞋", "Running Shoes"),
    ("羽绒服", "Down Jacket"),
    ("口红", "Lipstick"),
    ("坚果礼盒", "Nut Gift Box"),
    ("龙井茶", "Longjing Tea"),
    ("积木", "Building Blocks"),
    ("小说", "Novel"),
];

/// A progress bar of `len` steps drawn with `template` (indicatif's), or a hidden one.
pub fn progress_bar(show: bool, len: u64, template: &str) -> anyhow::Result<ProgressBar> {
    if !show {
        return Ok(ProgressBar::hidden());
    }
    let b = ProgressBar::new(len);
    b.set_style(ProgressStyle::with_template(template)?.progress_chars("=> "));
    Ok(b)
}

/// Runs the plan through a connection to the proxy (database selected).
pub async fn seed(conn: &mut mysql_async::Conn, plan: &SeedPlan) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let total = CATEGORIES.len() as u64 + 2 * (plan.products + 10) + 2 * plan.members;
    let bar = progress_bar(
        plan.progress,
        total,
        "{spinner} {msg:<12} [{bar:40}] {pos}/{len} rows ({per_sec}, {eta} left)",
    )?;

    bar.set_message("categories");
    let rows: Vec<String> = CATEGORIES
        .iter()
        .enumerate()
        .map(|(i, (slug, zh, en))| {
            format!(
                "({}, NULL, {}, {}, {})",
                i + 1,
                lit(*slug),
                lit(format!("{zh} {en}")),
                i * 10
            )
        })
        .collect();
    conn.query_drop(format!(
        "INSERT IGNORE INTO categories (id, parent_id, slug, name, sort_order) VALUES {}",
        rows.join(", ")
    ))
    .await?;
    bar.inc(CATEGORIES.len() as u64);

    bar.set_message("products");
    let mut products: Vec<(u64, Money, bool)> = (1..=plan.products)
        .map(|i| (normal_product_id(i), Money(0), false))
        .collect();
    products.extend(HOT_SKUS.map(|id| (id, Money(0), true)));
    let mut product_rows = Vec::with_capacity(products.len());
    for p in &mut products {
        let cat = (p.0 % CATEGORIES.len() as u64) as usize;
        let noun = NOUNS[cat % NOUNS.len()];
        let (brand, brand_en) = BRANDS[rng.random_range(0..BRANDS.len())];
        let a = rng.random_range(0..ADJ_ZH.len());
        let price = Money(rng.random_range(990..=899_900) / 10 * 10);
        let list = Money(price.0 + price.0 / 5);
        p.1 = if p.2 { Money(price.0 / 2) } else { price };
        let zh = format!("{brand} {}{} {}号", ADJ_ZH[a], noun.0, p.0);
        let en = format!("{brand_en} {} {} #{}", ADJ_EN[a], noun.1, p.0);
        let desc =
            format!("{zh}：正品保障，七天无理由退货。{en}: genuine, free returns within 7 days.");
        product_rows.push(format!(
            "({}, {}, {}, {}, {}, {}, {}, {}, {})",
            p.0,
            cat + 1,
            lit(zh),
            lit(en),
            lit(brand),
            lit(desc),
            p.1,
            list,
            u8::from(p.2)
        ));
    }
    for chunk in product_rows.chunks(BATCH) {
        conn.query_drop(format!(
            "INSERT IGNORE INTO products (id, category_id, title, title_en, brand, description, \
             price, list_price, is_flash_sale) VALUES {}",
            chunk.join(", ")
        ))
        .await?;
        bar.inc(chunk.len() as u64);
    }

    bar.set_message("stock");
    // Hot and normal SKUs never share a statement: the proxy refuses the mix.
    let (hot, normal): (Vec<&(u64, Money, bool)>, Vec<_>) = products.iter().partition(|p| p.2);
    // Units sold so far (search ranks by it): few products sell most.
    let normal_rows: Vec<String> = normal
        .iter()
        .map(|p| {
            let stock = rng.random_range(50..=5000);
            let sold = (rng.random::<f64>().powi(4) * 5000.0) as i64;
            format!("({}, {}, {stock}, {sold})", p.0, p.0)
        })
        .collect();
    for chunk in normal_rows.chunks(BATCH) {
        conn.query_drop(format!(
            "INSERT IGNORE INTO sku_stock (sku_id, product_id, stock, sold) VALUES {}",
            chunk.join(", ")
        ))
        .await?;
        bar.inc(chunk.len() as u64);
    }
    let hot_rows: Vec<String> = hot
        .iter()
        .map(|p| format!("({}, {}, {})", p.0, p.0, plan.hot_stock))
        .collect();
    conn.query_drop(format!(
        "INSERT IGNORE INTO sku_stock (sku_id, product_id, stock) VALUES {}",
        hot_rows.join(", ")
    ))
    .await?;
    bar.inc(hot_rows.len() as u64);

    bar.set_message("members");
    let tiers = [
        "basic", "basic", "basic", "silver", "silver", "gold", "platinum",
    ];
    let mut n = 1;
    while n <= plan.members {
        let end = (n + BATCH as u64 - 1).min(plan.members);
        let mut logins = Vec::new();
        let mut profiles = Vec::new();
        for id in n..=end {
            let salt = auth::new_salt(&mut rng);
            let hash = auth::hash_password(&salt, SEED_PASSWORD);
            let email = member_email(id);
            logins.push(format!(
                "({id}, {}, {}, {})",
                lit(&*email),
                lit(salt),
                lit(hash)
            ));
            profiles.push(format!(
                "({id}, {}, {}, {})",
                lit(&*email),
                lit(format!("会员{id} Member {id}")),
                lit(tiers[rng.random_range(0..tiers.len())])
            ));
        }
        conn.query_drop(format!(
            "INSERT IGNORE INTO member_logins (member_id, email, password_salt, password_hash) VALUES {}",
            logins.join(", ")
        ))
        .await?;
        bar.inc(logins.len() as u64);
        conn.query_drop(format!(
            "INSERT IGNORE INTO members (member_id, email, display_name, tier) VALUES {}",
            profiles.join(", ")
        ))
        .await?;
        bar.inc(profiles.len() as u64);
        n = end + 1;
    }
    bar.finish_with_message("done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_products_skip_the_hot_range() {
        assert_eq!(normal_product_id(1), 1);
        assert_eq!(normal_product_id(1000), 1000);
        assert_eq!(normal_product_id(1001), 1011);
        let ids: Vec<u64> = (1..=2000).map(normal_product_id).collect();
        assert!(ids.iter().all(|i| !HOT_SKUS.contains(i)));
    }
}
