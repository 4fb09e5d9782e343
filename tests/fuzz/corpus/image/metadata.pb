
ñÄram_quota=8K, label="demo"(0Ä@Rn
ÄÑÄâœïöí‡˚Ê´àÄäœïöí‡˚Ê´ ê"

ÄÄÄÄÄÄ	ÄÄÑÄÄ (Ù2†ÄÄÄÄ§ÄÄÄÄÄÄ00
KÑram_quota=8K, label="demo"0Å@Z%
main (∞0¿
ep (¥0ƒÑ
Gàram_quota=8K, label="demo""ram_quota=40960Ç@b
§ÄÄÄÄÄÄ@
Låram_quota=8K, label="demo"0É@j&
$–ÄÄ@§Ä (§Ä Ä  Ä  ‘0
6êram_quota=8K, label="demo"0Ñ@r
demo-target‡
3îram_quota=8K, label="demo"0Ö@z
demo -> log
4òram_quota=8K, label="demo"0Ü@ÇàêN·! (
0úram_quota=8K, label="demo"0á@ä	Ñ R

"

"

	"
"
Ä"ê
Å"Ä